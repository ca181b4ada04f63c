"""The reconstruction figures of `keras-mim pretrain`: what they draw for each kind of data
(images, clips, spectrograms, paired modalities, band groups) and the final
reconstructions.png with its held-out pixel error."""

import os

from keras_mim.cli.pretrain_options import VIDEO_DATASET
from keras_mim.models.methods import get_method_spec


def final_figure(args, model, heldout, noise, output, backend):
    """Draw reconstructions.png of the held-out data with the figures' fixed masks, and
    return the pixel-space MSE on their hidden pixels (of the main modality for paired
    data; with --norm-pix-loss true the reconstruction borrows each patch's own
    statistics)."""
    import numpy as np

    from keras_mim import viz, viz_multimodal

    kind = get_method_spec(args.method).data
    if kind == "paired":
        seen, reconstruction, mask = model.reconstruct(heldout, noise=noise)[model.encoder.main]
        hidden = np.broadcast_to(mask, seen.shape) > 0.5
        error = float(np.mean((reconstruction - seen)[hidden] ** 2))
    else:
        panels = viz.reconstruction_panels(model, heldout, noise=noise)
        hidden = np.broadcast_to(panels["mask"], panels["original"].shape) > 0.5
        error = float(np.mean((panels["reconstruction"] - panels["original"])[hidden] ** 2))
    what = {"audio": "spectrograms", "paired": "scenes", "multispectral": "tiles"}.get(kind, "images")
    title = (f"{args.method}, {args.preset}, {os.path.basename(str(args.data or args.dataset).rstrip('/'))}, "
             f"{args.epochs} epochs ({backend}): held-out {what}")
    path = os.path.join(output, "reconstructions.png")
    if kind == "paired":
        viz_multimodal.plot_multimodal_reconstructions(model, heldout, noise=noise, path=path, title=title)
    elif kind == "multispectral":
        names = None
        if args.dataset == "multispectral":
            from keras_mim.data.multispectral import SATMAE_BANDS, SENTINEL2_BANDS

            names = [SENTINEL2_BANDS[b] for b in SATMAE_BANDS]
        viz_multimodal.plot_band_group_reconstructions(model, heldout, noise=noise, path=path, title=title,
                                                       band_names=names)
    else:
        viz.plot_reconstructions(model, heldout, noise=noise, path=path, spectrogram=kind == "audio", title=title,
                                 max_images=4 if args.dataset == VIDEO_DATASET else len(heldout))
    return error


def figure_kind(args):
    """What the run's reconstruction figures draw (`ReconstructionFigureCallback`'s `figure`)."""
    return {"paired": "modalities", "multispectral": "band_groups"}.get(get_method_spec(args.method).data,
                                                                          "reconstructions")


def figure_images(heldout):
    """Samples per figure: 4 images, 2 clips, 2 sets of modalities."""
    return 2 if isinstance(heldout, dict) or heldout.ndim == 5 else 4
