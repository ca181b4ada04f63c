"""Reconstruction figures (matplotlib), in the layout of the official MAE demo.

Figures are drawn on a bare `matplotlib.figure.Figure` with the Agg canvas: no pyplot
state, no window ever opens, and nothing needs closing. In a notebook, the returned
figure displays as the cell's value.
"""

import os

import numpy as np
from keras import ops

PANEL_TITLES = ("original", "masked", "reconstruction", "reconstruction + visible")


def _check_images(images):
    try:
        array = np.asarray(ops.convert_to_numpy(images), dtype="float32")
    except Exception as error:  # not array-like, or not numeric
        raise TypeError(
            f"`images` must be a float array of shape (B, H, W, C) or clips (B, T, H, W, C), "
            f"got {type(images).__name__}."
        ) from error
    if array.ndim not in (4, 5) or 0 in array.shape:
        raise ValueError(
            "`images` must have rank 4 (B, H, W, C) or 5 (clips, B, T, H, W, C) with no empty "
            f"axis, got shape {array.shape}."
        )
    return array


def _check_model(model):
    if not callable(getattr(model, "reconstruct", None)):
        raise TypeError(
            "`model` must have a `reconstruct(images, noise=None)` method (e.g. a "
            f"MaskedAutoencoder), got {type(model).__name__}."
        )


def _check_noise(noise, batch_size):
    if noise is None:
        return None
    noise = np.asarray(ops.convert_to_numpy(noise), dtype="float32")
    if noise.ndim != 2 or noise.shape[0] != batch_size:
        raise ValueError(
            f"`noise` must have shape (batch, num_patches) with batch = {batch_size} "
            f"(the number of images), got shape {noise.shape}."
        )
    return noise


def _to_numpy(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")))


def _finish(fig, path):
    """Lay out `fig`, save it as PNG at `path` (creating folders) if given, return it."""
    title = fig.get_suptitle()
    # tight_layout ignores the figure title: keep its lines' height free at the top.
    top = 1.0 - (0.1 + 0.22 * (title.count("\n") + 1)) / fig.get_figheight() if title else 1.0
    fig.tight_layout(rect=(0, 0, 1, top))
    if path is not None:
        parent = os.path.dirname(os.fspath(path))
        if parent:
            os.makedirs(parent, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    return fig


def reconstruction_panels(model, images, noise=None):
    """Compute the arrays behind `plot_reconstructions`, in the images' own value range.

    Args:
        model: a model with `reconstruct(images, noise=None)` returning
            `(reconstruction, pixel_mask, token_mask)`, e.g. a `MaskedAutoencoder`.
        images: float array-like `(B, H, W, C)` at the model's image size, or clips
            `(B, T, H, W, C)` for a video model (every array below then has the T axis).
        noise: optional float `(B, N)` per-token scores that fix which patches are hidden
            (lower = visible); None draws a random mask.

    Returns:
        dict of float32 numpy arrays:
            `original` `(B, H, W, C)`: the input images;
            `masked` `(B, H, W, C)`: the input with hidden pixels set to a neutral gray,
                the midpoint `(min + max) / 2` of that image's values (all channels);
            `reconstruction` `(B, H, W, C)`: the model's prediction in pixel space;
            `pasted` `(B, H, W, C)`: the reconstruction on hidden pixels, the input on
                visible ones;
            `mask` `(B, H, W, 1)`: 1 = hidden pixel, 0 = visible.

    Examples:
        >>> import numpy as np, keras_mim
        >>> model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
        >>> panels = reconstruction_panels(model, np.random.rand(2, 16, 16, 3).astype("float32"))
        >>> sorted(panels), panels["mask"].shape
        (['mask', 'masked', 'original', 'pasted', 'reconstruction'], (2, 16, 16, 1))
    """
    _check_model(model)
    original = _check_images(images)
    noise = _check_noise(noise, original.shape[0])
    reconstruction, pixel_mask, _ = model.reconstruct(original, noise=noise)
    reconstruction, mask = _to_numpy(reconstruction), _to_numpy(pixel_mask)
    axes = tuple(range(1, original.ndim))
    gray = 0.5 * (original.min(axis=axes, keepdims=True) + original.max(axis=axes, keepdims=True))
    return {
        "original": original,
        "masked": original * (1.0 - mask) + gray * mask,
        "reconstruction": reconstruction,
        "pasted": reconstruction * mask + original * (1.0 - mask),
        "mask": mask,
    }


def _displayable(image, low, high):
    """`(H, W, C)` -> (array for imshow, imshow kwargs); see `plot_reconstructions`."""
    scale = high - low if high > low else 1.0
    if image.shape[-1] >= 3:  # RGB, or the first three channels of a multichannel image
        return np.clip((image[..., :3] - low) / scale, 0.0, 1.0), {}
    return image[..., 0], {"cmap": "gray", "vmin": low, "vmax": low + scale}


def plot_reconstructions(model, images, noise=None, path=None, max_images=4, title=None, max_frames=8,
                         spectrogram=False):
    """Draw original / masked / reconstruction / reconstruction + visible, one row per image.

    For clips `(B, T, H, W, C)` each clip takes four rows (the four panels) with its
    frames in a row (up to `max_frames`, evenly spaced).

    The four panels are those of the official MAE demo. `model.reconstruct` already undoes
    the per-patch target normalisation, so every panel is in the images' value range.
    Each row is displayed with the value range (min, max) of its original image, applied
    to all four panels, so images in [0, 1], in [0, 255] or standardized all look right;
    reconstructed values outside that range are clipped. For a model trained with
    `norm_pix_loss=True` the figure says that hidden patches were drawn with their
    true mean and contrast (see `MaskedAutoencoder.reconstruct`). Channels: C=1 is drawn in
    grayscale; C=3 as RGB; C=2 shows the first channel in grayscale; C>3 shows the first
    three channels as RGB (the range still comes from all channels).

    Args:
        model: a model with `reconstruct(images, noise=None)`, e.g. a `MaskedAutoencoder`.
        images: float array-like `(B, H, W, C)` at the model's image size, or clips
            `(B, T, H, W, C)`.
        noise: optional float `(B, N)` per-token scores fixing the hidden patches.
        path: optional file path; the figure is saved there as PNG (parent folders are
            created, an existing file is replaced).
        max_images: positive int, the number of images (rows) drawn, from the start of
            the batch.
        title: optional figure title.
        max_frames: for clips, the number of frames (columns) drawn.
        spectrogram: the images are spectrograms `(B, frames, mel_bins, 1)` (Audio-MAE):
            each panel is drawn with time to the right and frequency upwards, in the
            "magma" colour map.

    Returns:
        The `matplotlib.figure.Figure` (also when `path` is given).

    Examples:
        >>> import numpy as np, keras_mim
        >>> model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
        >>> images = np.random.rand(2, 16, 16, 3).astype("float32")
        >>> fig = plot_reconstructions(model, images, title="untrained")
        >>> len(fig.axes)
        8
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_model(model)
    for name, value in (("max_images", max_images), ("max_frames", max_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str, an os.PathLike or None, got {type(path).__name__}.")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"`title` must be a str or None, got {type(title).__name__}.")
    images = _check_images(images)
    noise = _check_noise(noise, images.shape[0])
    images = images[:max_images]
    noise = None if noise is None else noise[:max_images]
    panels = reconstruction_panels(model, images, noise=noise)

    if getattr(model, "norm_pix_loss", False):
        # See MaskedAutoencoder.reconstruct: hidden patches borrow their own mean/std.
        note = "norm-pix model: hidden patches shown with their true mean/std"
        title = f"{title}\n{note}" if title else note
    keys = ("original", "masked", "reconstruction", "pasted")
    clips = images.ndim == 5
    if clips:  # one row per panel, frames in a row
        frames = np.unique(np.linspace(0, images.shape[1] - 1, min(max_frames, images.shape[1])).round().astype(int))
        rows, cols = 4 * images.shape[0], len(frames)
    else:
        rows, cols = images.shape[0], 4
    height, width = images.shape[-3:-1]
    if spectrogram:  # drawn transposed: frequency up, time to the right
        height, width = width, height
    panel_size = 2.2 if not clips else 1.3
    extra = 0.3 + 0.25 * (title.count("\n") + 1) if title else 0.3
    fig = Figure(figsize=(cols * panel_size + (0.8 if clips else 0), rows * panel_size * height / width + extra))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for row in range(rows):
        item = row // 4 if clips else row
        low, high = float(images[item].min()), float(images[item].max())
        for col in range(cols):
            key = keys[row % 4] if clips else keys[col]
            image = panels[key][item][frames[col]] if clips else panels[key][item]
            ax = axes[row, col]
            data, kwargs = _displayable(image, low, high)
            if spectrogram:
                data, kwargs = image[..., 0].T, dict(kwargs, cmap="magma", origin="lower", aspect="auto")
            ax.imshow(data, interpolation="nearest", **kwargs)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if clips and col == 0:
                ax.set_ylabel(PANEL_TITLES[row % 4].replace(" + ", "\n+ "), fontsize=8)
            if clips and row == 0:
                ax.set_title(f"frame {frames[col]}", fontsize=8)
            if not clips and row == 0:
                ax.set_title(PANEL_TITLES[col], fontsize=10)
    if title:
        # Pinned 0.08 in below the top edge: tall clip figures would otherwise overlap it.
        fig.suptitle(title, fontsize=10 if "\n" in title else 12, y=1.0 - 0.08 / fig.get_figheight(), va="top")
    return _finish(fig, path)


def mask_overlay(image, mask, patch_size, fill=0.5):
    """An image `(H, W, C)` with hidden patches of `mask` `(gh * gw,)` set to `fill`.

    Examples:
        >>> import numpy as np
        >>> mask_overlay(np.ones((4, 4, 1)), np.array([1.0, 0, 0, 0]), 2)[..., 0].tolist()
        [[0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """
    h, w = image.shape[:2]
    gh, gw = h // patch_size, w // patch_size
    hidden = np.kron(np.asarray(mask, "float32").reshape(gh, gw), np.ones((patch_size, patch_size)))
    return np.where(hidden[..., None] > 0, fill, np.asarray(image, "float32"))


def plot_mask_gallery(image, generators, patch_size=16, num_samples=4, path=None, num_frames=4):
    """Grid of masks, one row per strategy, drawn over one real image.

    2D generators draw `num_samples` masks of a batch; video generators (`grid_rank`
    3, they need a `(T, gh, gw)` grid) draw one clip of `num_frames` time slices,
    shown left to right (a multi-modal one, `num_frames` modalities). Hidden patches are mid-gray; each row is titled with the
    strategy name and its hidden fraction.

    Args:
        image: float array `(H, W, 3)` or `(H, W)` in [0, 1], H and W divisible by
            `patch_size`.
        generators: dict of row name -> `MaskGenerator`.
        patch_size: pixels per patch side.
        num_samples: masks (columns) per 2D strategy.
        path: optional PNG path (parent folders are created).
        num_frames: time slices drawn for video generators.

    Returns:
        The `matplotlib.figure.Figure`.

    Examples:
        >>> import numpy as np
        >>> from keras_mim.masking import RandomMaskGenerator
        >>> fig = plot_mask_gallery(np.random.rand(64, 64, 3), {"random": RandomMaskGenerator(seed=0)})
        >>> len(fig.axes)
        4
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = np.asarray(image, dtype="float32")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[0] % patch_size or image.shape[1] % patch_size:
        raise ValueError(
            f"`image` must be (H, W[, C]) with H and W divisible by `patch_size`={patch_size}, "
            f"got shape {image.shape}."
        )
    if not isinstance(generators, dict) or not generators:
        raise ValueError(f"`generators` must be a non-empty dict of name -> MaskGenerator, got {generators!r}.")
    grid = (image.shape[0] // patch_size, image.shape[1] // patch_size)
    cols = max(num_samples, num_frames)
    fig = Figure(figsize=(2.0 * cols, 2.25 * len(generators)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(generators), cols, squeeze=False)
    shown = image if image.shape[-1] == 3 else image[..., :1].repeat(3, axis=-1)
    for row, (name, generator) in enumerate(generators.items()):
        if getattr(generator, "grid_rank", None) == 3:  # a video strategy: (T, gh, gw) grids
            shape = (num_frames,) + grid
            masks = ops.convert_to_numpy(generator(np.zeros((1, 1)), grid_shape=shape)["mask"])
            masks = masks.reshape(num_frames, -1)
            axis = getattr(generator, "leading_axis", "t")
            labels = [f"t = {t}" if axis == "t" else f"{axis} {t}" for t in range(num_frames)]
        else:
            masks = ops.convert_to_numpy(generator(np.zeros((num_samples, 1)), grid_shape=grid)["mask"])
            labels = [f"sample {i}" for i in range(num_samples)]
        for col in range(cols):
            ax = axes[row, col]
            ax.set_axis_off()
            if col < len(masks):
                ax.imshow(np.clip(mask_overlay(shown, masks[col], patch_size), 0, 1), interpolation="nearest")
                ax.set_title(f"{name} ({masks[col].mean():.0%})" if col == 0 else labels[col], fontsize=9)
    return _finish(fig, path)


def plot_point_reconstructions(model, points, noise=None, path=None, max_clouds=4, title=None):
    """Draw point clouds as 3D scatter plots: the original, the visible groups, and the
    hidden groups' predicted points (with the true ones in light gray), one row per cloud.

    Args:
        model: a model with `reconstruct(points, noise=None)` returning `(visible, hidden,
            predicted)` points, e.g. a `PointMAE`.
        points: float `(B, N, 3)` clouds at the model's `num_points`.
        noise: optional float `(B, G)` scores fixing the hidden groups (lower = visible).
        path: optional PNG path (parent folders are created, an existing file replaced).
        max_clouds: the number of clouds (rows) drawn, from the start of the batch.
        title: optional figure title.

    Returns:
        The `matplotlib.figure.Figure`.

    Examples:
        >>> import numpy as np, keras_mim
        >>> model = keras_mim.PointMAE.from_preset("pointmae_test", seed=0)
        >>> fig = plot_point_reconstructions(model, np.random.rand(2, 64, 3).astype("float32"))
        >>> len(fig.axes)
        6
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not hasattr(model, "reconstruct") or not hasattr(model, "encoder"):
        raise TypeError(f"`model` must have `reconstruct`, e.g. a PointMAE, got {type(model).__name__}.")
    if isinstance(max_clouds, bool) or not isinstance(max_clouds, int) or max_clouds < 1:
        raise ValueError(f"`max_clouds` must be a positive int, got {max_clouds!r}.")
    points = np.asarray(points, "float32")[:max_clouds]
    noise = None if noise is None else np.asarray(noise, "float32")[:max_clouds]
    visible, hidden, predicted = model.reconstruct(points, noise=noise)
    fig = Figure(figsize=(9, 3 * len(points) + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    panels = (("original", [(points, "tab:blue")]), ("visible groups", [(visible, "tab:blue")]),
              ("predicted hidden groups", [(hidden, "0.8"), (predicted, "tab:red")]))
    for row in range(len(points)):
        for col, (name, layers) in enumerate(panels):
            ax = fig.add_subplot(len(points), 3, 3 * row + col + 1, projection="3d")
            for cloud, color in layers:
                ax.scatter(*cloud[row].T, s=2, c=color, depthshade=False)
            ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
            ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
            if row == 0:
                ax.set_title(name, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return _finish(fig, path)
