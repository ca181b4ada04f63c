"""Figures of the multi-input methods: each modality of a `MultiMAE`, each band group of a
`SatMAE`, as rows of input / masked input / reconstruction with the visible patches pasted
in."""

import numpy as np

from keras_mim.viz import _finish, _to_numpy

PANELS = ("input", "masked", "reconstruction + visible")


def _check_max(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")


def _draw_rows(rows, title, path):
    """One figure row per `(label, seen, reconstruction, pixel_mask, style)`: the three
    `PANELS`, each `(H, W)` or `(H, W, 3)` image drawn with imshow `style`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.6, 2.1 * len(rows) + (0.4 if title else 0)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (label, seen, rec, mask, style) in enumerate(rows):
        hidden = mask[..., None] > 0.5 if seen.ndim == 3 else mask > 0.5
        shown = (seen, np.where(hidden, np.nan, seen), np.where(hidden, rec, seen))
        for c, (image, panel) in enumerate(zip(shown, PANELS)):
            ax = axes[r, c]
            ax.set_axis_off()
            ax.imshow(image, interpolation="nearest", **style)
            ax.set_title(f"{label}: {panel}" if c == 0 else panel, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def plot_multimodal_reconstructions(model, inputs, noise=None, path=None, max_samples=3, title=None):
    """Draw each modality of a few samples: the input, the masked input (hidden patches
    blank) and the reconstruction with the visible patches pasted in; one row per sample
    and modality. Images with 3 channels show as RGB, one channel (depth) with the viridis
    map in the input's range, class maps with a class colour map.

    Args:
        model: a model with `reconstruct(inputs, noise=None)` returning modality ->
            `(seen, reconstruction, pixel_mask)`, e.g. a `MultiMAE`.
        inputs: dict modality -> batch, as the model takes it.
        noise: optional float `(B, N)` scores fixing the hidden tokens (lower = visible).
        path: optional PNG path (parent folders are created).
        max_samples: samples drawn, from the start of the batch.
        title: optional figure title.

    Returns:
        The `matplotlib.figure.Figure`.

    Examples:
        >>> import keras_mim
        >>> from keras_mim.data.paired_scenes import paired_scenes
        >>> model = keras_mim.MultiMAE.from_preset("multimae_vit_test", seed=0)
        >>> fig = plot_multimodal_reconstructions(model, paired_scenes(2, 16), max_samples=2)
        >>> len(fig.axes)  # 2 samples x 3 modalities x 3 panels
        18
    """
    if not callable(getattr(model, "reconstruct", None)) or not isinstance(inputs, dict):
        raise TypeError(f"`model` must have `reconstruct` (e.g. a MultiMAE) and `inputs` be a dict of modalities, "
                        f"got {type(model).__name__} and {type(inputs).__name__}.")
    _check_max(max_samples, "max_samples")
    inputs = {k: np.asarray(v)[:max_samples] for k, v in inputs.items()}
    noise = None if noise is None else np.asarray(noise, "float32")[:max_samples]
    panels = model.reconstruct(inputs, noise=noise)
    rows = []
    for i in range(len(next(iter(inputs.values())))):
        for name, arrays in panels.items():
            seen, rec, mask = (a[i] for a in arrays)
            classes = model.encoder.modalities[name].get("classes")
            if classes:
                style = {"cmap": "tab10" if classes <= 10 else "tab20", "vmin": 0, "vmax": max(classes - 1, 1)}
            elif seen.shape[-1] >= 3:
                seen, rec, style = np.clip(seen[..., :3], 0, 1), np.clip(rec[..., :3], 0, 1), {}
            else:
                style = {"cmap": "viridis", "vmin": float(seen.min()), "vmax": float(seen.max())}
            squeeze = (lambda a: a) if seen.shape[-1] == 3 else (lambda a: a[..., 0])
            rows.append((name, squeeze(seen), squeeze(rec), mask[..., 0], style))
    return _draw_rows(rows, title, path)


def group_composite(image, bands):
    """A displayable view of `bands` of `image` `(H, W, C)`: three or more bands as an RGB
    composite of the group's first three in reverse order (bands listed by rising
    wavelength give true or false colour: B4 B3 B2 for Sentinel-2's B2 B3 B4 B8), fewer
    as the first band alone `(H, W)`."""
    bands = list(bands)
    return image[..., bands[:3][::-1]] if len(bands) >= 3 else image[..., bands[0]]


def plot_band_group_reconstructions(model, images, noise=None, path=None, max_samples=2, title=None,
                                    band_names=None):
    """Draw each band group of a few multispectral images: input, masked input and the
    reconstruction with the visible patches pasted in, one row per image and group (as
    SatMAE masks each group on its own, the masked panels differ between groups). Each
    group shows as `group_composite`, scaled to its input's 2-98 % range; time series
    `(B, T, H, W, C)` show their frames as further rows.

    Args:
        model: a model with `reconstruct(images, noise=None)` returning
            `(reconstruction, pixel_mask, token_mask)` in band order, whose
            `encoder.channel_groups` lists the groups, e.g. a `SatMAE`.
        images: float `(B, H, W, C)` (or what the model takes: a dict with `"frames"`).
        noise: optional float `(B, N)` scores fixing the hidden tokens.
        path: optional PNG path (parent folders are created).
        max_samples: images drawn, from the start of the batch.
        title: optional figure title.
        band_names: optional names of the C bands for the row labels.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    groups = getattr(getattr(model, "encoder", None), "channel_groups", None)
    if not callable(getattr(model, "reconstruct", None)) or groups is None:
        raise TypeError(f"`model` must have `reconstruct` and `encoder.channel_groups` (e.g. a SatMAE), "
                        f"got {type(model).__name__}.")
    _check_max(max_samples, "max_samples")
    if isinstance(images, dict):
        images = {k: np.asarray(v)[:max_samples] for k, v in images.items()}
        frames = images["frames"]
    else:
        images = frames = np.asarray(images, "float32")[:max_samples]
    noise = None if noise is None else np.asarray(noise, "float32")[:max_samples]
    rec, mask, _ = (_to_numpy(a) for a in model.reconstruct(images, noise=noise))
    if frames.ndim == 4:  # one frame each
        frames, rec, mask = frames[:, None], rec[:, None], mask[:, None]
    if band_names is not None and len(band_names) != frames.shape[-1]:
        raise ValueError(f"`band_names` must name the {frames.shape[-1]} bands, got {len(band_names)}.")
    names = band_names or [str(b) for b in range(frames.shape[-1])]
    rows = []
    for i in range(len(frames)):
        for t in range(frames.shape[1]):
            for g, bands in enumerate(groups):
                seen, out = group_composite(frames[i, t], bands), group_composite(rec[i, t], bands)
                low, high = np.percentile(seen, (2, 98))
                scale = (high - low) or 1.0
                seen, out = (np.clip((a - low) / scale, 0, 1) for a in (seen, out))
                style = {} if seen.ndim == 3 else {"cmap": "viridis", "vmin": 0, "vmax": 1}
                when = f"frame {t}, " if frames.shape[1] > 1 else ""
                label = f"{when}group {g} ({' '.join(names[b] for b in bands)})"
                rows.append((label, seen, out, mask[i, t, ..., bands[0]], style))
    return _draw_rows(rows, title, path)
