"""`keras-mim pretrain`: its arguments and their checks (`resolve_pretrain`, before anything
heavy); the run itself is in `pretrain_run.py`, the run folder in `run_folder.py`."""

import math

from keras_mim import registry_snapshot
from keras_mim.cli import run_folder
from keras_mim.cli.backend import select_backend
from keras_mim.cli.common import (
    HelpFormatter,
    add_backend_argument,
    add_jit_argument,
    add_steps_per_execution_argument,
    check_steps_per_execution,
    check_backend_installed,
    check_output,
    help_listing,
    non_negative_int,
    positive_float,
    positive_int,
    ratio,
)
from keras_mim.cli.pretrain_options import (
    DATA_BUDGET_SECONDS,
    DATA_LARGE_BATCH,
    DATASETS,
    DEFAULT_AUDIO_DATASET,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DATASET,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MASK_RATIO,
    DEFAULT_NUM_AUDIO_CLIPS,
    DEFAULT_NUM_CLIPS,
    DEFAULT_NUM_POINT_CLOUDS,
    DEFAULT_PRESETS,
    DEFAULT_WEIGHT_DECAY,
    KIND_DATASETS,
    NUM_HELDOUT,
    VIDEO_DATASET,
    WARMUP_FRACTION,
    add_architecture_arguments,
    apply_data_recipe,
    check_architecture,
    check_data_flags,
    data_kind,
    default_preset,
    methods_taking,
    needs_video_preset,
    preset_kind,
    pretrains_on_clips,
    steps_per_epoch,
    too_few_images,
)
from keras_mim.cli.pretrain_checks import check_distribute, check_method_options, scan_data
from keras_mim.cli.pretrain_multimodal import DEFAULT_NUM_SCENES, add_multimodal_arguments, leading_axis
from keras_mim.cli.pretrain_value import add_value_check_argument, check_monitor
from keras_mim.utils import to_2tuple


def add_pretrain_parser(commands):
    p = commands.add_parser(
        "pretrain",
        help="pretraining (MAE and the other methods) on a built-in sample dataset or your own "
             "images (--data); writes a run folder.",
        description=(
            "Pretrain with a masked image modeling method (MAE by default; --method) on a small "
            "built-in dataset (no download) or your own images (--data FOLDER or tfds:NAME) "
            "and write a run folder: config.json (settings and command line; --config repeats "
            "them), history.csv (one row per epoch, from 1), logs/ (TensorBoard), checkpoints/ "
            "(the latest complete epoch's model, written atomically: --resume continues from it, "
            "losing at most the current epoch; a lock file keeps a second run out), figures/ "
            "(during training; methods that predict pixels only), and at the end model.keras, "
            "reconstructions.png (held-out images, fixed masks), value_check.json (class subfolders "
            "only) and history.json. A NaN or "
            "infinite loss stops the run (exit status 1) keeping the last good epoch's checkpoints. "
            "With no options it trains mae_vit_nano_patch2_16 on the 16 px digits for "
            f"{DEFAULT_EPOCHS['digits']} epochs, a few minutes on a 2-core CPU."
        ),
        epilog="\n\n".join([
            help_listing("methods (--method NAME)", registry_snapshot.METHODS),
            help_listing("masking strategies (--masking NAME)", registry_snapshot.MASK_STRATEGIES),
            "Learning rate: MAE's rule 1.5e-4 * batch / 256 targets 800-epoch ImageNet runs; "
            f"for these tiny models and a few thousand steps {DEFAULT_LEARNING_RATE:g} (peak, "
            f"after a linear warmup over {WARMUP_FRACTION:.0%} of the steps (--warmup-fraction), then cosine decay to "
            "1% of it) trains much faster and stays stable. AdamW(beta_2=0.95, weight decay "
            f"{DEFAULT_WEIGHT_DECAY:g}, none on biases, norms and tokens) as MAE.",
        ]),
        formatter_class=HelpFormatter,
    )
    run_folder.record_options(p)  # args._given: the options given, for config.json, --config, --resume
    add_backend_argument(p)
    p.add_argument("--method", choices=list(registry_snapshot.METHODS), default="mae",
                   help="pretraining method: one of the methods listed below")
    p.add_argument("--teacher", default=None,
                   help=f"for {' and '.join(methods_taking('teacher'))}: a .keras file holding a keras_mim "
                        "encoder or pretraining model (its encoder is used) or any Keras model of the "
                        "same token grid; it stays frozen")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="built-in sample data: 'digits' (scikit-learn digits, grayscale, "
                        "the 1438 of the train split; figures use test-split digits), 'photos' (random RGB crops of the scikit-image / "
                        "scikit-learn sample photos), 'shapes' (clips of moving shapes "
                        f"generated on the fly, {DEFAULT_NUM_CLIPS} by default, for the video "
                        "methods), 'spoken-digits' (the words zero to nine spoken by espeak-ng in "
                        f"varied voices, {DEFAULT_NUM_AUDIO_CLIPS} clips of 1 s by default, for the audio methods) or "
                        "'tones' (generated tones and chirps), or 'shapes3d' (point clouds on generated sphere, cube, "
                        "cylinder, cone, torus and pyramid surfaces, for the point-cloud methods), 'scenes' (generated "
                        "scenes as paired RGB, depth and 4-class maps, for multimae) or 'multispectral' (generated "
                        "tiles of Sentinel-2's 13 bands cut to SatMAE's 10, for satmae); default "
                        f"{DEFAULT_DATASET} for image methods, shapes for video ones, {DEFAULT_AUDIO_DATASET} for audio "
                        "ones, shapes3d for point clouds, scenes for multimae, multispectral for satmae")
    p.add_argument("--data", default=None,
                   help="your own images instead of --dataset: a folder (searched recursively; png, jpg, "
                        "bmp, gif, webp, tif incl. 16-bit and multi-band; unreadable files are skipped and "
                        "listed in skipped_files.txt) or tfds:NAME[/CONFIG] prepared under --data-dir "
                        f"(never downloaded); {NUM_HELDOUT} images are held out for the figures. For the "
                        "audio methods: a folder of wav (flac, ogg with soundfile) files, mixed to mono, "
                        "resampled to 16 kHz; for the point-cloud methods: a folder of .npy (N x 3) or .ply files; for "
                        "multimae: a folder of paired files <item>_<modality>.<ext> (scene_0001_rgb.png, "
                        "scene_0001_depth.tif, scene_0001_semseg.png; items missing a partner are skipped and "
                        "listed); for satmae: multi-band images (e.g. 10-band TIFFs)")
    p.add_argument("--data-dir", default=None,
                   help="with --data tfds:NAME: the TensorFlow Datasets folder holding the prepared set")
    p.add_argument("--split", default="train", help="with --data tfds:NAME: the split to pretrain on")
    p.add_argument("--augmentation", choices=("mae", "medical", "none"), default=None,
                   help="with --data: 'mae' (RandomResizedCrop scale 0.2-1 + horizontal flip, the default), "
                        "'medical' (scale 0.5-1, no flip) or 'none' (resize to --image-size; the default of "
                        "view-pair methods, whose views are crops of their own)")
    p.add_argument("--preset", default=None,
                   help="model preset (see keras_mim.list_presets()); default "
                        + ", ".join(f"{v} for {k}" for k, v in DEFAULT_PRESETS.items()))
    p.add_argument("--encoder", default=None,
                   help="the encoder of a convolutional method, instead of --preset: trains preset "
                        "METHOD_ENCODER, e.g. --method spark --encoder resnet50 (keras.applications ResNet50 "
                        "made sparse), --method fcmae --encoder convnextv2_atto")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="image side in pixels; default: the preset's image size")
    add_architecture_arguments(p, positive_int)
    add_multimodal_arguments(p)
    p.add_argument("--num-images", type=positive_int, default=None,
                   help="training images (clips for shapes); default: the 1438 digits of the fixed train split "
                        f"(keras_mim.data.load_labelled_digits), 4096 photo crops or {DEFAULT_NUM_CLIPS} clips")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs; default " + ", ".join(f"{v} for {k}" for k, v in DEFAULT_EPOCHS.items())
                        + f"; with --data, MAE and the default preset: as many as fit about {DATA_BUDGET_SECONDS // 60} "
                        "minutes of training on a 2-core CPU (the value study's budget, docs/value.md)")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help=f"batch size; with --data, MAE and the default preset: {DATA_LARGE_BATCH} from "
                        f"{8 * DATA_LARGE_BATCH} images up")
    p.add_argument("--mask-ratio", type=ratio, default=None,
                   help="fraction of patches hidden, in [0, 1), at least one patch left visible; "
                        f"default: the method's own (MAE {DEFAULT_MASK_RATIO})")
    p.add_argument("--masking", choices=list(registry_snapshot.MASK_STRATEGIES), default=None,
                   help="masking strategy: one of those listed below (keras_mim.masking.MASK_GENERATORS); "
                        "default: the method's own (MAE: random)")
    p.add_argument("--norm-pix-loss", choices=("true", "false"), default=None,
                   help="score predictions against per-patch normalised pixels (MAE's choice "
                        "for representation quality). Off by default: the figures undo that "
                        "normalisation with each hidden patch's own mean and std, which leaks "
                        "the hidden content (an untrained model already looks right with small "
                        "patches), so only raw-pixel targets give honest reconstruction figures. For the "
                        f"methods {', '.join(methods_taking('norm_pix_loss'))}; default false where the run "
                        "writes figures, else the method's own")
    p.add_argument("--target", default=None,
                   help="what hidden patches are scored against, for the methods "
                        f"{', '.join(methods_taking('target'))}: a name from keras_mim.targets.TARGETS "
                        "(pixels, hog, fourier); default: the method's own (pixels). "
                        "Reconstruction figures need pixels")
    p.add_argument("--learning-rate", type=positive_float, default=DEFAULT_LEARNING_RATE,
                   help="peak learning rate (after warmup)")
    p.add_argument("--warmup-fraction", type=ratio, default=WARMUP_FRACTION,
                   help="share of the optimizer updates over which the learning rate rises linearly from 0 "
                        "(0: no warmup)")
    p.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY, help="AdamW weight decay")
    p.add_argument("--output", default=None,
                   help="run folder; default runs/pretrain-YYYYmmdd-HHMMSS. An existing non-empty "
                        "folder is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing non-empty run folder, replacing this command's "
                        "files there (other files are left alone)")
    p.add_argument("--resume", default=None, metavar="RUN_FOLDER",
                   help="continue a stopped run in its folder from its last complete epoch, with the "
                        "settings in RUN_FOLDER/config.json (other flags must agree with them); a "
                        "complete run is reported and left alone (exit status 0)")
    p.add_argument("--config", default=None, metavar="CONFIG_JSON",
                   help="take the settings from a run's config.json (or a JSON object of argument "
                        "names); flags given as well override it. Writes a new run folder")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the weights, masks, data order and sample crops")
    add_jit_argument(p)
    add_steps_per_execution_argument(p)
    add_value_check_argument(p)
    p.add_argument("--figure-every", type=non_negative_int, default=None,
                   help="save a reconstruction figure in figures/ every N epochs (0: never); "
                        "default: about 5 figures per run")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32",
                   help="dtype policy: mixed_bfloat16 computes in bfloat16 with float32 weights and "
                        "losses (fast on GPUs/TPUs with bf16 units; slow on most CPUs)")
    p.add_argument("--gradient-accumulation", type=positive_int, default=1, metavar="N",
                   help="apply the optimizer every N steps to the mean of N batches' gradients "
                        "(Keras' gradient_accumulation_steps): an effective batch of N x --batch-size "
                        "in the memory of one batch")
    p.add_argument("--distribute", choices=("none", "data"), default="none",
                   help="'data': data parallel over all visible GPUs / TPU cores (JAX DataParallel, "
                        "TensorFlow MirroredStrategy; not available on torch); --batch-size is the "
                        "global batch and must be divisible by the device count")

    return p


def resolve_pretrain(parser, args):
    """Fill in dataset-dependent defaults and check every argument; exits with status 2
    (`parser.error`) on a problem, before anything is loaded or written."""
    given = getattr(args, "_given", [])
    args._command_line = run_folder.command_line(given)
    args._complete = False
    if args.resume is not None:
        run_folder.apply_resume(parser, args, given)
        if run_folder.is_complete(args.resume):
            args._complete, args.backend = True, None  # nothing to run: no backend restart
            return args
    elif args.config is not None:
        run_folder.apply_config(parser, args, given)
    select_backend(parser, args)  # --resume / --config may have set it; before Keras is imported
    from keras_mim.models.methods import get_method_spec
    from keras_mim.models.presets import PRESETS

    num_images_given = args.num_images is not None
    spec = get_method_spec(args.method)
    clips = pretrains_on_clips(spec)  # video methods, and SiamMAE's frame pairs
    if args.data is not None:
        check_data_flags(parser, args, spec)
    elif args.augmentation is not None or args.data_dir is not None or args.split != "train":
        parser.error("--augmentation, --data-dir and --split apply to --data only")
    kind = data_kind(spec)
    if args.data is None and args.dataset is None:
        args.dataset = {"images": DEFAULT_DATASET, "clips": VIDEO_DATASET, "audio": DEFAULT_AUDIO_DATASET,
                        "points": "shapes3d", "paired": "scenes", "multispectral": "multispectral"}[kind]
    if args.dataset is not None and args.dataset not in KIND_DATASETS[kind]:
        holds = next(k for k, sets in KIND_DATASETS.items() if args.dataset in sets)
        parser.error(f"--method {args.method} pretrains on {kind}; use --dataset {' or '.join(KIND_DATASETS[kind])} "
                     f"(--dataset {args.dataset} holds {holds})")
    # --data with MAE on its default preset: epochs and batch from the value study's recipe
    recipe = (args.data is not None and args.preset is None and args.method == "mae" and args.resume is None
              and args.config is None)
    epochs_given, batch_given = args.epochs is not None, any(option == "--batch-size" for option, _ in given)
    if args.encoder is not None:
        if args.preset is not None:
            parser.error("give --encoder or --preset, not both")
        by_method = {}
        for p, preset in PRESETS.items():
            if "encoder_class" in preset and not p.endswith("_test"):
                by_method.setdefault(preset["method"], []).append(p[len(preset["method"]) + 1:])
        encoders = sorted(by_method.get(args.method, []))
        if args.encoder not in encoders:
            parser.error(f"--encoder {args.encoder!r} is not an encoder of --method {args.method}; expected one of "
                         f"{encoders}" if encoders else f"--encoder applies to the methods with encoder presets "
                         f"({', '.join(sorted(by_method))}), not --method {args.method}")
        args.preset = f"{args.method}_{args.encoder}"
    if args.preset is None:
        args.preset = default_preset(spec, args.dataset)
    if args.preset not in PRESETS:
        listing = "\n".join(f"  {name}: {preset['description']}" for name, preset in PRESETS.items())
        parser.error(f"unknown preset {args.preset!r}; available presets:\n{listing}")
    encoder = PRESETS[args.preset]["encoder"]
    audio = preset_kind(parser, args, spec, encoder) == "audio"
    if spec.data == "points":  # groups of points: no image size, no patches
        patch, grid = (encoder["group_size"],), (encoder["num_groups"],)
        check_architecture(parser.error, args, spec, PRESETS[args.preset], patches=False)
    else:
        if args.image_size is None and not audio:  # audio: the preset's (frames, mel bins), no --image-size
            args.image_size = to_2tuple(encoder["image_size"], "image_size")[0]
        patch = check_architecture(parser.error, args, spec, PRESETS[args.preset])
        size = tuple(encoder["image_size"]) if audio else (args.image_size, args.image_size)
        if size[0] % patch[0] or size[1] % patch[1]:
            of = "--patch-size" if args.patch_size is not None else f"preset {args.preset!r}"
            what = f"frames x mel bins {size}" if audio else f"--image-size {args.image_size}"
            parser.error(f"{what} is not divisible by the patch size {patch} of {of}")
        grid = (size[0] // patch[0], size[1] // patch[1])
        lead = leading_axis(parser, args, spec, encoder)  # modalities or band groups
        grid = grid if lead is None else (lead,) + grid
    video = needs_video_preset(spec)
    if encoder.get("num_frames") is not None:
        if not video:
            parser.error(f"preset {args.preset!r} is a video model; --method {args.method} needs an image preset")
        grid = (encoder["num_frames"] // encoder.get("tubelet_size", 2),) + grid
    elif video:
        parser.error(f"--method {args.method} needs a video preset (e.g. {DEFAULT_PRESETS[VIDEO_DATASET]}), "
                     f"got the image preset {args.preset!r}")
    if args.dataset == "photos" and args.image_size > 512:
        parser.error(f"--image-size must be at most 512 for the photos dataset, got {args.image_size}")
    check_method_options(parser, args, spec, grid, patch)
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS[args.dataset or "data"]
    if args.data is not None:
        available = scan_data(parser, args)
        if args.num_images is None:
            args.num_images = available
        elif args.num_images > available:
            parser.error(f"--num-images {args.num_images} is more than the {available} training images of "
                         f"--data {args.data!r} ({NUM_HELDOUT} more are held out for the figures)")
        if recipe:
            apply_data_recipe(args, math.prod(grid), epochs_given, batch_given)
    elif args.dataset == "digits":
        from keras_mim.data.sample_datasets import NUM_TRAIN_DIGITS

        available = NUM_TRAIN_DIGITS
        if args.num_images is None:
            args.num_images = available
        elif args.num_images > available:
            parser.error(
                f"--num-images {args.num_images} is more than the {available} digits of the train "
                "split (the test split is kept for evaluation)"
            )
    elif args.num_images is None and args.dataset == VIDEO_DATASET:
        args.num_images = DEFAULT_NUM_CLIPS
    elif args.num_images is None and audio:
        args.num_images = DEFAULT_NUM_AUDIO_CLIPS
    elif args.num_images is None and spec.data == "points":
        args.num_images = DEFAULT_NUM_POINT_CLOUDS
    elif args.num_images is None and args.dataset in ("scenes", "multispectral"):
        args.num_images = DEFAULT_NUM_SCENES
    elif args.num_images is None:
        from keras_mim.data.sample_datasets import DEFAULT_NUM_PHOTO_CROPS

        args.num_images = DEFAULT_NUM_PHOTO_CROPS
    if args.dataset == "spoken-digits" and args.resume is None:
        from keras_mim.data.sample_audio import espeak_available

        if not espeak_available():
            parser.error("--dataset spoken-digits synthesises speech with the espeak-ng system package, which is not "
                         "installed (apt-get install espeak-ng); use --dataset tones or --data FOLDER of audio files")
    if not math.isfinite(args.weight_decay) or args.weight_decay < 0:
        parser.error(f"--weight-decay must be a non-negative number, got {args.weight_decay}")
    if args.figure_every is None:
        args.figure_every = max(1, args.epochs // 5)
    check_monitor(parser, args)
    steps = steps_per_epoch(args.num_images, args.batch_size, spec.two_views or args.data is not None)
    if steps < 1:
        parser.error(too_few_images(args, spec.two_views, num_images_given))
    if steps * args.epochs < args.gradient_accumulation:
        parser.error(f"--gradient-accumulation {args.gradient_accumulation} exceeds the "
                     f"{steps * args.epochs} training steps ({args.epochs} epoch(s) x {steps}); "
                     "nothing would be updated")
    if args.resume is None:
        check_output(parser, args, "pretrain")
    check_backend_installed(parser, args)
    check_steps_per_execution(parser, args)
    check_distribute(parser, args)
    args.num_tokens = math.prod(grid)
    args.num_frames = encoder.get("num_frames")
    args._resolved_command_line = run_folder.resolved_command_line(parser, args)
    return args


def run_pretrain(args):
    """Train as `args` say (already checked by `resolve_pretrain`); returns the history dict
    (None when `--resume` finds the run complete). See `pretrain_run.run_pretrain`."""
    from keras_mim.cli.pretrain_run import run_pretrain as run

    return run(args)
