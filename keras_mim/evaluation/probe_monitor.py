"""What more pretraining buys: frozen-feature accuracy of the encoder while it pretrains."""

import keras
import numpy as np

from keras_mim.evaluation.knn import check_labels, knn_scores
from keras_mim.evaluation.probe_selection import block_features, ridge_accuracy, validation_split
from keras_mim.models.image_classifier import get_encoder
from keras_mim.utils import check_positive_int


class ProbeMonitor(keras.callbacks.Callback):
    """Every `every` epochs (and after the last), probe the encoder being pretrained on
    labelled images and add the accuracies to the epoch's logs, so `History`, `CSVLogger` and
    `keras-mim pretrain`'s history.json hold a scaling curve (accuracy against epochs).

    Each time, one feature pass over the labelled images gives every block's features (avg
    pooling of its patch tokens, as `LinearProbe(block=...)` reads them), then:

    - `probe_top1`: a ridge linear classifier (`ridge_head_init`, closed form, no SGD) on the
      block that scores best on a validation split of the TRAIN images, refitted on all of
      them and scored on the test images (the block is chosen without the test images);
    - `probe_last_top1`: the same on the encoder's output (the last block after its norm);
    - `knn_top1`: weighted k-NN (k = 20, T = 0.07) on the encoder's output features.

    Training starts with a probe of the starting weights (epoch `initial_epoch`: a fresh
    model's random initialisation, the curve's baseline; kept in `records`, not in the logs).
    Every block's test accuracy of each epoch is kept in `records` (a list of dicts) for
    per-block curves. Why not `keras-mim probe` after the run: the probe of an intermediate
    epoch needs its weights, which a run does not keep; and the closed-form probe takes
    seconds where an SGD probe takes minutes.

    Args:
        train_images: labelled images `(N, H, W, C)` in [0, 1] (N >= 4; the probe and the k-NN bank).
        train_labels: their class ids.
        test_images: held-out labelled images (scored, never fitted).
        test_labels: their class ids.
        every: probe every this many epochs (the last epoch is always probed).
        k: k-NN neighbours (capped at N).
        validation_fraction: share of each class of the train images choosing the block.
        batch_size: batch size of the feature pass.
        seed: seed of the validation split.
        initial_epoch: the epoch training starts after (as `fit`'s; a resumed run's), which
            the starting probe is recorded as.

    Example (in training: `model.fit(x, callbacks=[monitor])`; here one probe by hand):
    >>> import numpy as np
    >>> from keras_mim import ViTEncoder
    >>> encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
    >>> x = np.random.rand(16, 16, 16, 3).astype("float32")
    >>> monitor = ProbeMonitor(x[:12], np.arange(12) % 2, x[12:], np.arange(4) % 2, k=3)
    >>> monitor.set_model(encoder)
    >>> record = monitor.evaluate(epoch=1)
    >>> sorted(record["blocks"]), record["probe_block"] in ("0", "last")
    (['0', 'last'], True)
    """

    def __init__(self, train_images, train_labels, test_images, test_labels, every=1, k=20,
                 validation_fraction=0.2, batch_size=256, seed=0, initial_epoch=0):
        super().__init__()
        self.train_labels = check_labels(train_labels, len(train_images), "train_labels")
        self.test_labels = check_labels(test_labels, len(test_images), "test_labels")
        if len(self.train_labels) < 4 or len(self.test_labels) < 1:
            raise ValueError(f"`train_images` must hold at least 4 images and `test_images` at least 1, got "
                             f"{len(self.train_labels)} and {len(self.test_labels)}.")
        self.images = np.concatenate([np.asarray(train_images, "float32"), np.asarray(test_images, "float32")])
        self.every = check_positive_int(every, "every")
        self.k = min(check_positive_int(k, "k"), len(self.train_labels))
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_classes = int(max(self.train_labels.max(), self.test_labels.max())) + 1
        self.fit_ids, self.validation_ids = validation_split(self.train_labels, validation_fraction, seed)
        self.seed = seed
        self.initial_epoch = initial_epoch
        self.records = []

    def on_train_begin(self, logs=None):
        self.evaluate(self.initial_epoch)

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every and epoch + 1 != last:
            return
        record = self.evaluate(epoch + 1)
        if logs is not None:
            logs.update({name: record[name] for name in ("probe_top1", "probe_last_top1", "knn_top1")})

    def evaluate(self, epoch=None):
        """Probe the encoder now; returns (and keeps in `records`) the epoch's record."""
        encoder = get_encoder(self.model)
        features = block_features(encoder, self.images, ("avg",), self.batch_size)  # {(block, "avg"): (N+M, D)}
        n, y, y_test = len(self.train_labels), self.train_labels, self.test_labels
        fit, held = self.fit_ids, self.validation_ids
        blocks, validation = {}, {}
        for (block, _), f in features.items():
            name = "last" if block is None else str(block)
            blocks[name] = ridge_accuracy(f[:n], y, f[n:], y_test, self.num_classes, seed=self.seed)
            if len(held) and len(fit) >= 2:
                validation[name] = ridge_accuracy(f[:n][fit], y[fit], f[:n][held], y[held], self.num_classes,
                                                  seed=self.seed)
        chosen = max(validation, key=validation.get) if validation else "last"
        output = features[(None, "avg")]
        votes = knn_scores(output[:n], y, output[n:], num_classes=self.num_classes, k=self.k)
        record = {"epoch": epoch, "probe_top1": blocks[chosen], "probe_block": chosen,
                  "probe_last_top1": blocks["last"], "knn_top1": float(np.mean(votes.argmax(-1) == y_test)),
                  "blocks": blocks, "validation": validation}
        self.records.append(record)
        return record
