"""What `keras-mim pretrain` defaults to, and which of its options apply to which method.

The per-method rules are read from the method registry (`keras_mim.models.methods`), so
a new method needs no line here: `--target` applies where the model takes a target the
method leaves free, `--norm-pix-loss` where it takes `norm_pix_loss`, `--masking` /
`--mask-ratio` where it takes a mask ratio, `--teacher` where the method needs one; the
data (images, clips, view pairs) and the default preset come from the record. The
argument parser reads what these rules say from the registry snapshot
(`keras_mim/registry_snapshot.py`, `methods_taking`), as it must not import Keras.
"""

import math

from keras_mim import registry_snapshot

DATASETS = ("digits", "photos", "shapes", "spoken-digits", "tones", "shapes3d", "scenes", "multispectral")
#: The built-in sets of each kind of training data (`MethodSpec.data`; SiamMAE's frame pairs are cut from clips).
KIND_DATASETS = {"images": ("digits", "photos"), "clips": ("shapes",), "audio": ("spoken-digits", "tones"),
                 "points": ("shapes3d",), "paired": ("scenes",), "multispectral": ("multispectral",)}

# Defaults of `pretrain`, per dataset where they differ. The plain `keras-mim pretrain`
# (digits, nano preset, 40 epochs x 45 steps of 32) takes a few minutes on a 2-core CPU
# and its held-out reconstructions resemble the digits. Photos (micro preset, 4096 crops)
# cost about 3x more per epoch and after 10 epochs (3 minutes) only fill the hidden
# patches with the local colour and brightness, so they are not the default. Raw-pixel
# targets (--norm-pix-loss false) keep the figures honest; lr 2e-3 beat 1e-3 and 4e-3
# there. Clip methods train on generated moving-shapes clips ("shapes": 8 frames of
# 32 px, made on the fly, no download).
DEFAULT_DATASET = "digits"
VIDEO_DATASET = "shapes"
DEFAULT_PRESETS = {"digits": "mae_vit_nano_patch2_16", "photos": "mae_vit_micro_patch4_32",
                   "shapes": "videomae_vit_nano_patch4_32", "data": "mae_vit_micro_patch4_32",
                   "spoken-digits": "audiomae_vit_tiny_patch8", "tones": "audiomae_vit_tiny_patch8",
                   "shapes3d": "pointmae_tiny", "scenes": "multimae_vit_tiny", "multispectral": "satmae_vit_tiny"}
DEFAULT_NUM_CLIPS = 512
# Audio methods: spoken digits synthesised by espeak-ng (1 s each; the first NUM_HELDOUT are held out),
# or generated tones and chirps.
DEFAULT_AUDIO_DATASET = "spoken-digits"
DEFAULT_NUM_AUDIO_CLIPS = 640
# Point-cloud methods: clouds sampled on generated shapes (six classes), 512 points each by default.
DEFAULT_NUM_POINT_CLOUDS = 600

# `pretrain --data FOLDER` with the default method (MAE) and preset: the value study's recipe
# for the data given (docs/value.md). Without --epochs: as many epochs as fit about
# DATA_BUDGET_SECONDS of training on a 2-core CPU at MAE's measured cost, an epoch costing
# MAE_SECONDS_PER_IMAGE_TOKEN per image and token plus MAE_SECONDS_PER_EPOCH, fitted to the
# value study's two runs (micro preset, 28 px = 49 tokens, mask 0.75, batch 128, JAX):
# Fashion-MNIST 74.4 s an epoch of 20000 images (967 s / 13), Animal-MNIST 24.5 s an epoch of
# 5991 (1103 s / 45), i.e. 3.56 ms per image and 3.2 s per epoch; between DATA_MIN_EPOCHS and
# DATA_MAX_EPOCHS. Without --batch-size: DATA_LARGE_BATCH from 8 batches of it up (the study's
# batch), DEFAULT_BATCH_SIZE below.
DATA_BUDGET_SECONDS = 15 * 60
MAE_SECONDS_PER_IMAGE_TOKEN = (967 / 13 - 1103 / 45) / ((20000 - 5991) * 49)
MAE_SECONDS_PER_EPOCH = 1103 / 45 - 5991 * 49 * MAE_SECONDS_PER_IMAGE_TOKEN
DATA_MIN_EPOCHS, DATA_MAX_EPOCHS = 1, 200
DATA_LARGE_BATCH = 128


def data_recipe(num_images, num_tokens):
    """`(epochs, batch_size)` of `pretrain --data` with MAE's default preset, for `num_images`
    training images of `num_tokens` patches each.

    Examples:
        >>> data_recipe(20000, 49)  # Fashion-MNIST's pretraining part at 28 px: 12 x 74 s
        (12, 128)
        >>> data_recipe(500, 64)  # 5.5 s an epoch, most of it the per-epoch cost
        (163, 32)
    """
    per_epoch = num_images * num_tokens * MAE_SECONDS_PER_IMAGE_TOKEN + MAE_SECONDS_PER_EPOCH
    epochs = int(min(DATA_MAX_EPOCHS, max(DATA_MIN_EPOCHS, DATA_BUDGET_SECONDS // per_epoch)))
    return epochs, DATA_LARGE_BATCH if num_images >= 8 * DATA_LARGE_BATCH else DEFAULT_BATCH_SIZE
DEFAULT_EPOCHS = {"digits": 40, "photos": 20, "shapes": 20, "data": 20, "spoken-digits": 30, "tones": 20, "shapes3d": 40,
                  "scenes": 20, "multispectral": 20}
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 2e-3
DEFAULT_MASK_RATIO = 0.75
DEFAULT_WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.05  # of all steps, as MAE (40 of 800 epochs)
NUM_HELDOUT = 8  # images kept out of training for the reconstruction figures
SIAMMAE_CLIP_FRAMES = 16  # frames of the generated clips SiamMAE draws its frame pairs from
NO_WEIGHT_DECAY = ["bias", "gamma", "beta", "cls_token", "mask_token", "tau"]  # as MAE: no decay on 1-D params /
# tokens (Swin V2's per-head attention temperature `tau` is one too)


def steps_per_epoch(num_examples, batch_size, two_views):
    """Training steps of an epoch: view-pair pipelines drop a partial last batch."""
    return num_examples // batch_size if two_views else math.ceil(num_examples / batch_size)


def takes_target(spec):
    """`--target`: single-image methods whose model takes a target the method leaves free."""
    return spec.takes("target") and spec.data == "images" and not spec.two_views


def takes_norm_pix_loss(spec):
    """`--norm-pix-loss`: methods whose model takes `norm_pix_loss`."""
    return spec.takes("norm_pix_loss")


def takes_masking(spec):
    """`--masking` / `--mask-ratio`: methods whose model hides tokens at a ratio."""
    return spec.takes("mask_ratio")


def writes_figures(spec):
    """Whether a run writes reconstruction figures: single-input pixel methods."""
    return spec.pixels and not spec.two_views


def pretrains_on_clips(spec):
    """Whether the training data are clips (video methods, and SiamMAE's frame pairs)."""
    return spec.data == "clips"


def data_kind(spec):
    """What the run trains on (`MethodSpec.data`): "images", "clips" (video methods, SiamMAE's
    frame pairs), "audio", "points", "paired" (modalities) or "multispectral" (band stacks)."""
    return "clips" if spec.data == "clips" else spec.data


def needs_video_preset(spec):
    """Whether the model itself takes clips (not frame pairs cut from them)."""
    return spec.data == "clips" and not spec.two_views


def methods_where(rule):
    """Names of the registered methods `rule(spec)` holds for, in `list_methods()` order."""
    from keras_mim.models.methods import get_method_spec, list_methods

    return [name for name in list_methods() if rule(get_method_spec(name))]


def default_preset(spec, dataset):
    """The preset a run of method `spec` on `dataset` (None: `--data`) trains."""
    return spec.cli_preset or DEFAULT_PRESETS[dataset or "data"]


#: The per-method options of `pretrain` and the rule saying whether one applies to a method.
#: `keras_mim/registry_snapshot.py` records each method's options by these rules, so that the
#: argument parser lists them without importing the registry (which imports Keras).
OPTION_RULES = {
    "masking": takes_masking,
    "norm_pix_loss": takes_norm_pix_loss,
    "target": takes_target,
    "teacher": lambda spec: spec.teacher,
}


def methods_taking(option):
    """Names of the built-in methods an option of `OPTION_RULES` applies to, in
    `list_methods()` order, read from the registry snapshot (no Keras import).

    Examples:
        >>> methods_taking("teacher")
        ['milan', 'eva', 'maskalign', 'mrmae']
    """
    return [name for name, options in registry_snapshot.METHOD_OPTIONS.items() if option in options]


def apply_data_recipe(args, num_tokens, epochs_given, batch_given):
    """Set `args.epochs` / `args.batch_size` of a `pretrain --data` run from `data_recipe`
    where the user gave none, saying so in one printed line."""
    epochs, batch_size = data_recipe(args.num_images, num_tokens)
    args.epochs = args.epochs if epochs_given else epochs
    args.batch_size = args.batch_size if batch_given else batch_size
    if not epochs_given:
        print(f"keras-mim: {args.num_images} images of {num_tokens} patches: {args.epochs} epochs at batch "
              f"{args.batch_size}, about {DATA_BUDGET_SECONDS // 60} minutes of MAE training on a 2-core CPU "
              "(the value study's budget, docs/value.md); --epochs to change", flush=True)


def add_architecture_arguments(p, positive_int):
    """`--patch-size`, `--decoder-dim`, `--decoder-depth`: the preset's architecture with one
    part changed (the value study's recipe search, docs/value.md)."""
    p.add_argument("--patch-size", type=positive_int, default=None,
                   help="square patch size in pixels instead of the preset's (the token grid follows)")
    p.add_argument("--decoder-dim", type=positive_int, default=None,
                   help="decoder width instead of the preset's (methods with a decoder; a multiple of "
                        "its heads)")
    p.add_argument("--decoder-depth", type=positive_int, default=None,
                   help="decoder blocks instead of the preset's (methods with a decoder)")


def check_architecture(error, args, spec, preset, patches=True):
    """The patch size of the run (`--patch-size` or the preset's, as a pair), after checking
    the architecture options against method `spec` and `preset` (a `PRESETS` entry);
    `error(message)` reports."""
    from keras_mim.models.presets import preset_patch_size

    for option, value in (("--decoder-dim", args.decoder_dim), ("--decoder-depth", args.decoder_depth)):
        name = option[2:].replace("-", "_")
        if value is not None and not (spec.takes("decoder") or spec.takes(name)):
            error(f"{option} applies to methods with a decoder of that setting; {spec.model.__name__} (--method "
                  f"{args.method}) has none")
    heads = (preset.get("decoder") or {}).get("num_heads") or preset.get("kwargs", {}).get("decoder_num_heads")
    if args.decoder_dim is not None and heads and args.decoder_dim % heads:
        error(f"--decoder-dim {args.decoder_dim} is not a multiple of the {heads} decoder heads of preset "
              f"{args.preset!r}")
    if not patches:
        return None
    if args.patch_size is not None:
        return (args.patch_size, args.patch_size)
    return preset_patch_size(args.preset)


def architecture_overrides(args):
    """The `build_method` keyword arguments of the architecture options given."""
    names = {"patch_size": args.patch_size, "decoder_dim": args.decoder_dim, "decoder_depth": args.decoder_depth}
    return {name: value for name, value in names.items() if value is not None}


def preset_kind(parser, args, spec, encoder):
    """The data kind of the preset's method ("images", "clips", "audio", "points"); exits
    with status 2 when an audio or point-cloud preset and the method disagree, or on
    --image-size / --patch-size with one (their presets fix the input's layout)."""
    from keras_mim.models.methods import get_method_spec as method_spec
    from keras_mim.models.presets import preset_method

    kind = method_spec(preset_method(args.preset)).data
    for special, what in (("audio", "an audio"), ("points", "a point-cloud")):
        if (kind == special) != (spec.data == special):
            parser.error(f"preset {args.preset!r} is {what if kind == special else 'an image'} model; --method "
                         f"{args.method} needs {what if spec.data == special else 'a non-' + special} preset")
    if kind == "audio" and args.image_size is not None:
        parser.error(f"--image-size does not apply to audio; preset {args.preset!r} takes {encoder['image_size'][0]} "
                     f"frames x {encoder['image_size'][1]} mel bins (choose another preset)")
    if kind == "points" and (args.image_size is not None or args.patch_size is not None):
        parser.error(f"--image-size and --patch-size do not apply to point clouds; preset {args.preset!r} takes "
                     f"{encoder['num_points']} points in {encoder['num_groups']} groups of {encoder['group_size']}")
    return kind


def check_data_flags(parser, args, spec):
    """--data: only with image methods (view-pair ones cut their views from its images) and
    without --dataset."""
    if args.dataset is not None:
        parser.error(f"--data and --dataset both choose the training images; give one (got --data "
                     f"{args.data!r} and --dataset {args.dataset})")
    if spec.data == "clips":
        parser.error(f"--data holds single images; --method {args.method} needs clips (use --dataset)")
    if spec.data in ("audio", "points", "paired"):  # a folder of audio files / point clouds / paired files
        files = {"audio": "audio files (wav, flac, ogg)", "points": "point clouds (npy, ply)",
                 "paired": "paired files (<item>_<modality>.<ext>)"}[spec.data]
        if args.data.startswith("tfds:") or args.augmentation is not None:
            parser.error(f"--method {args.method} takes --data as a folder of {files}; tfds sets and "
                         "--augmentation apply to images")
        return
    if args.augmentation is None:  # view-pair methods: the view recipe crops and flips
        from keras_mim.registry_snapshot import PRESET_AUGMENTATIONS

        args.augmentation = "none" if spec.two_views else PRESET_AUGMENTATIONS.get(args.preset, "mae")
    if not args.data.startswith("tfds:") and (args.data_dir is not None or args.split != "train"):
        parser.error("--data-dir and --split apply to --data tfds:NAME only")


def too_few_images(args, two_views, num_images_given):
    """The error when the training images do not fill one batch (view pairs and --data drop a
    partial last batch), naming what the user gave: --num-images, or the --data / --dataset
    whose size it is."""
    count, batch = args.num_images, args.batch_size
    if num_images_given:
        what = f"--num-images {count} is"
    elif args.data is not None:
        what = (f"the {count} training images of --data {args.data!r} ({NUM_HELDOUT} more are held out "
                "for the figures) are")
    else:
        kind = "clips" if args.dataset == VIDEO_DATASET else "images"
        what = f"the {count} training {kind} of --dataset {args.dataset} are"
    unit = "view pairs" if two_views else "(a partial last batch is dropped)"
    return f"{what} fewer than one batch of --batch-size {batch} {unit}; use --batch-size {count} or less"


def check_masking(parser, name, mask_ratio, patch_size, grid):
    """Exit with status 2 unless strategy `name` (a --masking choice) can mask `grid`."""
    from keras_mim.masking import get_mask_generator

    try:
        generator = get_mask_generator(name, mask_ratio=mask_ratio, patch_size=patch_size)
        if generator.grid_rank is not None and generator.grid_rank != len(grid):
            three = f"{'modality' if generator.leading_axis == 'modality' else 'video'} token grids " \
                    f"({'M' if generator.leading_axis == 'modality' else 'T'}, gh, gw)"
            raise ValueError(f"it masks {three}, not images" if generator.grid_rank == 3
                             else "it masks image token grids (gh, gw), not clips")
        generator.num_visible(grid)
    except (ValueError, TypeError) as error:
        parser.error(f"--masking {name} cannot mask the {'x'.join(map(str, grid))} token grid: "
                     + str(error).replace("`", ""))
