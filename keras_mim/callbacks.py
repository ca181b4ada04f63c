"""Callbacks for `model.fit`: reconstruction figures saved during training, and a stop at
the first non-finite loss that leaves every checkpoint of the last good epoch untouched."""

import os
import re
import string

import keras
import numpy as np

from keras_mim.viz import _check_images, _check_noise, plot_reconstructions
from keras_mim.viz_multimodal import plot_band_group_reconstructions, plot_multimodal_reconstructions

#: What `ReconstructionFigureCallback` draws (its `figure` argument).
FIGURES = ("reconstructions", "modalities", "band_groups")


def _pattern_regex(filename_pattern):
    """A regex matching every file name `filename_pattern.format(epoch=...)` can produce."""
    parts = []
    fields = []
    for literal, field, _, _ in string.Formatter().parse(filename_pattern):
        parts.append(re.escape(literal))
        if field is not None:
            fields.append(field)
            parts.append(r".+?")
    return re.compile("".join(parts) + r"\Z"), fields


class ReconstructionFigureCallback(keras.callbacks.Callback):
    """Save a `plot_reconstructions` figure of a fixed batch every N epochs.

    The same images and the same `noise` (hence the same hidden patches) are used at
    every save, so the figures show the model's progress and nothing else. Files are
    named `filename_pattern.format(epoch=e)` with 1-based epochs `e`. Nothing is ever
    overwritten silently: at the start of training, if `output_dir` already holds a file
    matching the pattern (other than one this callback wrote itself during an earlier
    `fit`), a `FileExistsError` is raised before any training step; a file appearing
    in the meantime raises when it is about to be written. Pass `overwrite=True` to
    replace such files.

    Args:
        images: a small float batch `(B, H, W, C)` at the model's image size.
        output_dir: folder for the PNG files (created if missing).
        every_n_epochs: positive int; saves after epochs N, 2N, ... (1-based).
        noise: optional float `(B, N)` per-token scores fixing the hidden patches.
            If None, uniform noise is drawn once with numpy from `seed` (when the
            number of patches is known, at the start of the first `fit`) and reused.
        seed: optional int seed for that noise; None draws it from fresh entropy
            (still fixed for the callback's lifetime).
        max_images: positive int, the number of images (rows) per figure.
        filename_pattern: file name with an `{epoch}` field, e.g. `"rec_{epoch:03d}.png"`.
        overwrite: replace existing files instead of raising `FileExistsError`.
        spectrogram: the images are spectrograms (`plot_reconstructions(spectrogram=True)`).
        figure: `"reconstructions"` (`plot_reconstructions`), `"modalities"` (a dict of
            paired modalities, `plot_multimodal_reconstructions`, e.g. MultiMAE) or
            `"band_groups"` (multispectral images, `plot_band_group_reconstructions`,
            e.g. SatMAE).
        keep_existing: leave files that already exist in place and skip saving those
            epochs' figures (for a resumed run whose earlier figures are in
            `output_dir`); cannot be combined with `overwrite`.

    Examples:
        >>> import numpy as np, keras, keras_mim, tempfile
        >>> model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> x = np.random.rand(8, 16, 16, 3).astype("float32")
        >>> folder = tempfile.mkdtemp()
        >>> callback = ReconstructionFigureCallback(x[:2], folder, seed=0)
        >>> history = model.fit(x, epochs=2, verbose=0, callbacks=[callback])
        >>> sorted(os.listdir(folder))
        ['reconstruction_epoch0001.png', 'reconstruction_epoch0002.png']
    """

    def __init__(
        self,
        images,
        output_dir,
        every_n_epochs=1,
        noise=None,
        seed=None,
        max_images=4,
        filename_pattern="reconstruction_epoch{epoch:04d}.png",
        overwrite=False,
        keep_existing=False,
        spectrogram=False,
        figure="reconstructions",
    ):
        super().__init__()
        self.spectrogram = bool(spectrogram)
        if figure not in FIGURES:
            raise ValueError(f"`figure` must be one of {FIGURES}, got {figure!r}.")
        self.figure = figure
        if isinstance(images, dict):  # paired modalities (or frames with timestamps)
            self.images = {k: np.asarray(v) for k, v in images.items()}
        else:
            self.images = _check_images(images)
        if not isinstance(output_dir, (str, os.PathLike)):
            raise TypeError(
                f"`output_dir` must be a str or os.PathLike, got {type(output_dir).__name__}."
            )
        self.output_dir = os.fspath(output_dir)
        for name, value in (("every_n_epochs", every_n_epochs), ("max_images", max_images)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        self.every_n_epochs = every_n_epochs
        self.max_images = max_images
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
        self.seed = seed
        self.noise = _check_noise(noise, self._batch_size())
        if not isinstance(filename_pattern, str):
            raise TypeError(f"`filename_pattern` must be a str, got {type(filename_pattern).__name__}.")
        self._regex, fields = _pattern_regex(filename_pattern)
        try:
            name = filename_pattern.format(epoch=1)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                f"`filename_pattern` must be a format string whose only field is `epoch`, "
                f"got {filename_pattern!r} ({error})."
            ) from error
        if fields != ["epoch"] or os.sep in name or (os.altsep and os.altsep in name):
            raise ValueError(
                "`filename_pattern` must be a file name (no folder) with exactly one `{epoch}` "
                f"field, e.g. 'reconstruction_epoch{{epoch:04d}}.png', got {filename_pattern!r}."
            )
        self.filename_pattern = filename_pattern
        self.overwrite = bool(overwrite)
        self.keep_existing = bool(keep_existing)
        if self.overwrite and self.keep_existing:
            raise ValueError(
                "`overwrite` and `keep_existing` cannot both be True: choose whether existing "
                "figures are replaced or kept."
            )
        self._rng = np.random.default_rng(seed)
        self._written = set()

    def _batch_size(self):
        return len(next(iter(self.images.values()))) if isinstance(self.images, dict) else self.images.shape[0]

    def _plot(self, path, epoch):
        common = dict(noise=self._fixed_noise(), path=path, title=f"epoch {epoch}")
        if self.figure == "modalities":
            return plot_multimodal_reconstructions(self.model, self.images, max_samples=self.max_images, **common)
        if self.figure == "band_groups":
            return plot_band_group_reconstructions(self.model, self.images, max_samples=self.max_images, **common)
        return plot_reconstructions(self.model, self.images, max_images=self.max_images,
                                    spectrogram=self.spectrogram, **common)

    def _path(self, epoch):
        return os.path.join(self.output_dir, self.filename_pattern.format(epoch=epoch))

    def _fixed_noise(self):
        if self.noise is None:
            encoder = getattr(self.model, "encoder", None)
            num_patches = getattr(encoder, "num_patches", None)
            if not isinstance(num_patches, int):
                raise TypeError(
                    "ReconstructionFigureCallback needs `noise` for a model without "
                    f"`encoder.num_patches`; got a {type(self.model).__name__}."
                )
            self.noise = self._rng.random((self._batch_size(), num_patches)).astype("float32")
        return self.noise

    def on_train_begin(self, logs=None):
        if not callable(getattr(self.model, "reconstruct", None)):
            raise TypeError(
                "ReconstructionFigureCallback needs a model with a `reconstruct` method "
                f"(e.g. a MaskedAutoencoder), got {type(self.model).__name__}."
            )
        self._fixed_noise()
        if os.path.isdir(self.output_dir) and not (self.overwrite or self.keep_existing):
            clashes = sorted(
                name for name in os.listdir(self.output_dir)
                if self._regex.match(name) and os.path.join(self.output_dir, name) not in self._written
            )
            if clashes:
                raise FileExistsError(
                    f"`output_dir` {self.output_dir!r} already holds {len(clashes)} file(s) matching "
                    f"{self.filename_pattern!r} (e.g. {clashes[0]!r}); choose another folder, move "
                    "them, or pass overwrite=True to replace them."
                )
        os.makedirs(self.output_dir, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1  # Keras counts from 0; file names count from 1.
        if epoch % self.every_n_epochs:
            return
        path = self._path(epoch)
        if self.keep_existing and os.path.exists(path) and path not in self._written:
            return
        if os.path.exists(path) and not self.overwrite:
            raise FileExistsError(
                f"{path!r} already exists; pass overwrite=True to ReconstructionFigureCallback "
                "to replace it, or use another `output_dir`."
            )
        # Written under a temporary name, then renamed: a run killed while saving never
        # leaves a truncated figure under the real name (and a stopped one no partial file).
        partial = os.path.join(self.output_dir, f".{os.path.basename(path)}.partial.png")
        try:
            figure = self._plot(partial, epoch)
            figure.clear()  # a bare Figure (no pyplot): nothing else holds it
            os.replace(partial, path)
        except BaseException:  # Ctrl-C, a full disk
            if os.path.exists(partial):
                os.remove(partial)
            raise
        self._written.add(path)

    def get_config(self):
        return {
            "images": ({k: v.tolist() for k, v in self.images.items()} if isinstance(self.images, dict)
                       else self.images.tolist()),
            "output_dir": self.output_dir,
            "every_n_epochs": self.every_n_epochs,
            "noise": None if self.noise is None else self.noise.tolist(),
            "seed": self.seed,
            "max_images": self.max_images,
            "filename_pattern": self.filename_pattern,
            "overwrite": self.overwrite,
            "keep_existing": self.keep_existing,
            "spectrogram": self.spectrogram,
            "figure": self.figure,
        }


class NonFiniteLossError(RuntimeError):
    """Raised by `StopOnNonFiniteLoss` at the first batch whose loss is NaN or infinite.

    Attributes:
        epoch: 0-based epoch index (Keras' count) of that batch.
        batch: 0-based index of that batch within its epoch.
        loss: the loss value Keras reported for it (`nan`, `inf` or `-inf`).
    """

    def __init__(self, message, epoch, batch, loss):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.loss = loss


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """Stop `fit` at the first batch whose loss is NaN or infinite, keeping all earlier state.

    This is `keras.callbacks.TerminateOnNaN(raise_error=True)`, which raises from inside
    the bad batch (its default, `model.stop_training = True`, lets the epoch finish its
    callbacks and so checkpoint the bad weights). So no later callback sees those
    weights: no epoch-end checkpoint (`ModelCheckpoint`, `BackupAndRestore`) is written
    from them, no history row is logged for the broken epoch, and `BackupAndRestore`
    keeps its backup of the last complete epoch (Keras deletes it only at a normal end
    of training). Because the check overrides a batch hook, Keras runs it synchronously
    after every training batch, never in a background thread.

    What this class adds to Keras' own: `NonFiniteLossError` (a `RuntimeError`) that
    carries the epoch, batch and value, a message naming the epoch and batch (counted
    from 1) and the usual causes (a learning rate too high for the model or batch, NaN or
    infinite values in the data, an overflow in reduced precision), and `monitor` for a
    log entry other than `"loss"`. Catch the error to handle it; the model's weights are
    then those of the bad step, so reload a checkpoint before use.

    Args:
        monitor: the log entry to check after every training batch (Keras reports the
            running mean of the epoch's losses, so it turns non-finite at the first bad
            batch and stays so).

    Examples:
        >>> import numpy as np, keras, keras_mim
        >>> model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.SGD(1e30))
        >>> x = np.random.rand(16, 16, 16, 3).astype("float32")
        >>> try:
        ...     model.fit(x, epochs=2, batch_size=4, verbose=0, callbacks=[StopOnNonFiniteLoss()])
        ... except NonFiniteLossError as error:
        ...     print("stopped at epoch", error.epoch + 1, "batch", error.batch + 1)
        stopped at epoch 1 batch ...
    """

    def __init__(self, monitor="loss"):
        super().__init__(raise_error=True)
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a non-empty str, got {monitor!r}.")
        self.monitor = monitor
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        try:  # Keras' check reads "loss": hand it the monitored entry under that name
            super().on_batch_end(batch, {"loss": value})
        except RuntimeError as error:
            raise self._error(batch, float(np.asarray(value))) from error

    def _error(self, batch, value):
        epochs = (self.params or {}).get("epochs")
        steps = (self.params or {}).get("steps")
        where = f"epoch {self._epoch + 1}" + (f" of {epochs}" if epochs else "")
        where += f", batch {batch + 1}" + (f" of {steps}" if steps else "")
        return NonFiniteLossError(
            f"the training {self.monitor} became {value} at {where} (counted from 1); training "
            "stopped before this epoch's end, so no checkpoint, history row or backup was "
            "written from these weights. Likely causes: a learning rate too high (try a "
            "smaller one or a longer warmup), NaN or infinite values in the input data, or "
            "an overflow in reduced precision (try float32 instead of mixed_bfloat16/float16).",
            epoch=self._epoch, batch=batch, loss=value,
        )
