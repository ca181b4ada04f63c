"""`keras-mim pretrain` on several inputs at once: the paired modalities of MultiMAE
(`--dataset scenes`, or `--data` a folder of `<item>_<modality>.<ext>` files) and the band
groups of SatMAE (`--dataset multispectral`, or `--data` a folder of multi-band images):
the `--modalities` / `--channel-groups` options, the token grid they make, and the data."""

import argparse

from keras_mim.cli.pretrain_options import NUM_HELDOUT

#: Generated sets of these kinds: scenes hold RGB, depth and 4 classes; tiles 13 bands.
DEFAULT_NUM_SCENES = 1024


def modalities_argument(text):
    """`--modalities rgb:3,depth:1,semseg:classes=40` -> `{"rgb": 3, "depth": 1,
    "semseg": {"classes": 40}}` (argparse type; the first is the main modality).

    Examples:
        >>> modalities_argument("rgb:3,depth:1,semseg:classes=40")
        {'rgb': 3, 'depth': 1, 'semseg': {'classes': 40}}
    """
    out = {}
    for part in text.split(","):
        name, _, value = part.strip().partition(":")
        try:
            spec = {"classes": int(value[len("classes="):])} if value.startswith("classes=") else int(value)
            if (spec["classes"] if isinstance(spec, dict) else spec) < 1 or not name.isidentifier() or name in out:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not NAME:CHANNELS or NAME:classes=K (distinct names, positive counts), "
                "e.g. rgb:3,depth:1,semseg:classes=40") from None
        out[name] = spec
    return out


def channel_groups_argument(text):
    """`--channel-groups "0,1,2,6;3,4,5,7;8,9"` -> `((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))`
    (argparse type; the encoder checks that the groups cover every band once).

    Examples:
        >>> channel_groups_argument("0,1,2,6;3,4,5,7;8,9")
        ((0, 1, 2, 6), (3, 4, 5, 7), (8, 9))
    """
    try:
        groups = tuple(tuple(int(b) for b in group.split(",")) for group in text.split(";"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not band indices, commas within a group and semicolons between groups, "
            "e.g. 0,1,2,6;3,4,5,7;8,9") from None
    return groups


def add_multimodal_arguments(p):
    p.add_argument("--modalities", type=modalities_argument, default=None, metavar="NAME:C,...",
                   help="for multimae: the paired modalities instead of the preset's, NAME:CHANNELS or "
                        "NAME:classes=K for class maps, the first the main one (its ViT is the encoder "
                        "after pretraining), e.g. rgb:3,depth:1,semseg:classes=40; with --data each item "
                        "of the folder needs a file <item>_<NAME>.<ext> per modality")
    p.add_argument("--channel-groups", type=channel_groups_argument, default=None, metavar="BANDS;BANDS",
                   help="for satmae: the band groups instead of the preset's (Sentinel-2's official "
                        "0,1,2,6;3,4,5,7;8,9 on its 10 bands), band indices of the images, each band in "
                        "exactly one group")


def leading_axis(parser, args, spec, encoder):
    """The leading axis of the token grid: the number of modalities (MultiMAE) or band groups
    (SatMAE) of the run, from the options or the preset's `encoder` arguments (None for
    other methods); exits with status 2 on an option the method does not take."""
    if args.modalities is not None and "modalities" not in encoder:
        parser.error(f"--modalities applies to methods on paired modalities (multimae), not --method {args.method}")
    if args.channel_groups is not None and "channel_groups" not in encoder:
        parser.error(f"--channel-groups applies to methods on band groups (satmae), not --method {args.method}")
    if "modalities" in encoder:
        modalities = args.modalities or encoder["modalities"]
        if args.dataset == "scenes" and args.modalities is not None:
            from keras_mim.data.paired_scenes import CLASS_NAMES

            scenes = {"rgb": 3, "depth": 1, "semseg": {"classes": len(CLASS_NAMES)}}
            if any(scenes.get(name) != value for name, value in modalities.items()):
                parser.error(f"--dataset scenes holds {scenes}; --modalities {args.modalities} asks for others "
                             "(give --data FOLDER for your own modalities)")
        return len(modalities)
    if "channel_groups" in encoder:
        return len(args.channel_groups or encoder["channel_groups"] or ((),))
    return None


def encoder_overrides(args):
    """`build_method` keyword arguments of `--modalities` / `--channel-groups`."""
    out = {}
    if getattr(args, "modalities", None) is not None:
        out["modalities"] = args.modalities
    if getattr(args, "channel_groups", None) is not None:
        out["channel_groups"] = args.channel_groups
    return out


def preset_modalities(args):
    from keras_mim.models.presets import PRESETS

    return args.modalities or PRESETS[args.preset]["encoder"]["modalities"]


def paired_source(args):
    """`--data` for paired modalities: the `PairedFolder` (read once, kept in memory) and the
    number of training items; raises ValueError naming the problem."""
    import warnings

    from keras_mim.data.paired_folder import PairedFolder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = PairedFolder(args.data, preset_modalities(args))
    if len(folder) <= NUM_HELDOUT:
        raise ValueError(f"the folder holds {len(folder)} complete items; more than {NUM_HELDOUT} are needed "
                         f"({NUM_HELDOUT} are held out for the figures)")
    return folder, len(folder) - NUM_HELDOUT
