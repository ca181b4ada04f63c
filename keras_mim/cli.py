"""The `keras-mim` command line.

Subcommands:

- `pretrain`: MAE pretraining on a built-in sample dataset (offline), writing a run
  folder with the model, the loss history and reconstruction figures.

Run `keras-mim pretrain --help` for the options, or `python -m keras_mim.cli ...`.

The Keras backend is fixed when Keras is first imported, and importing this module
already imports Keras. So `--backend` different from the current one restarts the
command in a fresh Python process with `KERAS_BACKEND` set: `os.execve` when run from
the command line, a child process (whose exit status `main` returns) when `main(argv)`
is called from Python, so a notebook or test process is not replaced.
"""

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")
DATASETS = ("digits", "photos")

# Defaults of `pretrain`, per dataset where they differ. The plain `keras-mim pretrain`
# (digits, nano preset, 40 epochs x 56 steps of 32) takes about 2.5-3.5 minutes on a
# 2-core CPU and its held-out reconstructions resemble the digits. Photos (micro preset,
# 4096 crops) cost about 3x more per epoch and after 10 epochs (3 minutes) only fill the
# hidden patches with the local colour and brightness, so they are not the default. Raw-pixel targets
# (--norm-pix-loss false) keep the figures honest; lr 2e-3 beat 1e-3 and 4e-3 there.
DEFAULT_DATASET = "digits"
DEFAULT_PRESETS = {"digits": "mae_vit_nano_patch2_16", "photos": "mae_vit_micro_patch4_32"}
DEFAULT_EPOCHS = {"digits": 40, "photos": 20}
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 2e-3
DEFAULT_MASK_RATIO = 0.75
DEFAULT_WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.05  # of all steps, as MAE (40 of 800 epochs)
NUM_HELDOUT = 8  # images kept out of training for the reconstruction figures
NO_WEIGHT_DECAY = ["bias", "gamma", "beta", "cls_token", "mask_token"]  # as MAE: no decay on 1-D params / tokens

_REEXEC_ENV = "KERAS_MIM_CLI_REEXEC"


# ---------------------------------------------------------------------------- parsing
def _parsed(cast, accept, expected):
    """An argparse `type`: `cast(text)` if `accept` holds for it, else '<expected>, got ...'."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


_positive_int = _parsed(int, lambda v: v >= 1, "a positive int")
_non_negative_int = _parsed(int, lambda v: v >= 0, "a non-negative int")
_positive_float = _parsed(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
_ratio = _parsed(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: ...)` except for options whose default is None or False
    (their help text says what happens)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    """The `keras-mim` argument parser (subcommand parsers reachable as `parser.subparsers`)."""
    parser = argparse.ArgumentParser(
        prog="keras-mim",
        description="Masked image modeling in Keras 3 (TensorFlow, JAX or PyTorch backend).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.subparsers = {}

    p = commands.add_parser(
        "pretrain",
        help="MAE pretraining on a built-in sample dataset; writes a run folder.",
        description=(
            "Pretrain a masked autoencoder (MAE) on a small built-in dataset (no download) "
            "and write a run folder: model.keras, config.json, history.json, history.csv, "
            "reconstructions.png (held-out images, fixed masks) and figures/ (during training). "
            "With no options it trains mae_vit_nano_patch2_16 on the 16 px digits for "
            f"{DEFAULT_EPOCHS['digits']} epochs, a few minutes on a 2-core CPU."
        ),
        epilog=(
            "Learning rate: MAE's rule 1.5e-4 * batch / 256 targets 800-epoch ImageNet runs; "
            f"for these tiny models and a few thousand steps {DEFAULT_LEARNING_RATE:g} (peak, "
            f"after a linear warmup over {WARMUP_FRACTION:.0%} of the steps, then cosine decay to "
            "1% of it) trains much faster and stays stable. AdamW(beta_2=0.95, weight decay "
            f"{DEFAULT_WEIGHT_DECAY:g}, none on biases, norms and tokens) as MAE."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.subparsers["pretrain"] = p
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="Keras backend; default: KERAS_BACKEND, else Keras' configured one. "
                        "A different one restarts the command with KERAS_BACKEND set.")
    p.add_argument("--dataset", choices=DATASETS, default=DEFAULT_DATASET,
                   help="built-in sample data: 'digits' (scikit-learn digits, grayscale, "
                        "1797 images) or 'photos' (random RGB crops of the scikit-image / "
                        "scikit-learn sample photos)")
    p.add_argument("--preset", default=None,
                   help="model preset (see keras_mim.list_presets()); default "
                        + ", ".join(f"{v} for {k}" for k, v in DEFAULT_PRESETS.items()))
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="image side in pixels; default: the preset's image size")
    p.add_argument("--num-images", type=_positive_int, default=None,
                   help=f"training images; default: all digits except the {NUM_HELDOUT} held out "
                        "(1789), or 4096 photo crops")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="training epochs; default " + ", ".join(f"{v} for {k}" for k, v in DEFAULT_EPOCHS.items()))
    p.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, help="batch size")
    p.add_argument("--mask-ratio", type=_ratio, default=DEFAULT_MASK_RATIO,
                   help="fraction of patches hidden, in [0, 1), at least one patch left visible")
    p.add_argument("--masking", default="random",
                   help="masking strategy: a name from keras_mim.masking.MASK_GENERATORS "
                        "(random, block, simmim, grid, red, blue, green, purple, disjoint, guided)")
    p.add_argument("--norm-pix-loss", choices=("true", "false"), default="false",
                   help="score predictions against per-patch normalised pixels (MAE's choice "
                        "for representation quality). Off by default: the figures undo that "
                        "normalisation with each hidden patch's own mean and std, which leaks "
                        "the hidden content (an untrained model already looks right with small "
                        "patches), so only raw-pixel targets give honest reconstruction figures")
    p.add_argument("--learning-rate", type=_positive_float, default=DEFAULT_LEARNING_RATE,
                   help="peak learning rate (after warmup)")
    p.add_argument("--weight-decay", type=float, default=DEFAULT_WEIGHT_DECAY, help="AdamW weight decay")
    p.add_argument("--output", default=None,
                   help="run folder; default runs/pretrain-YYYYmmdd-HHMMSS. An existing non-empty "
                        "folder is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing non-empty run folder, replacing this command's "
                        "files there (other files are left alone)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed of the weights, masks, data order and sample crops")
    p.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto",
                   help="compile the train step (XLA on TensorFlow/JAX, torch.compile on torch); "
                        "'auto' lets Keras decide")
    p.add_argument("--figure-every", type=_non_negative_int, default=None,
                   help="save a reconstruction figure in figures/ every N epochs (0: never); "
                        "default: about 5 figures per run")

    m = commands.add_parser(
        "masks",
        help="draw every masking strategy on a real image (a PNG gallery).",
        description="Draw masks of each strategy over a sample photo bundled with scikit-image; "
                    "one row per strategy (video strategies show successive time slices).",
        formatter_class=_HelpFormatter,
    )
    parser.subparsers["masks"] = m
    m.add_argument("--backend", choices=BACKENDS, default=None, help="Keras backend (see pretrain)")
    m.add_argument("--image", default="astronaut",
                   help="scikit-image sample photo (astronaut, coffee, chelsea, rocket, ...)")
    m.add_argument("--image-size", type=_positive_int, default=224, help="image side in pixels")
    m.add_argument("--patch-size", type=_positive_int, default=16, help="patch side in pixels")
    m.add_argument("--strategies", default=None,
                   help="comma-separated strategy names; default: all of keras_mim.masking.MASK_GENERATORS")
    m.add_argument("--mask-ratio", type=_ratio, default=None,
                   help="hidden fraction for every strategy that takes one; default: each strategy's own")
    m.add_argument("--samples", type=_positive_int, default=4, help="masks drawn per strategy")
    m.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the masks")
    m.add_argument("--output", default="masks.png", help="PNG file to write")
    m.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    return parser


def _resolve_masks(parser, args):
    """Check `masks` arguments before anything heavy; exits with status 2 on a problem."""
    from keras_mim.masking import MASK_GENERATORS

    if args.image_size % args.patch_size:
        parser.error(f"--image-size {args.image_size} is not divisible by --patch-size {args.patch_size}")
    names = list(MASK_GENERATORS) if args.strategies is None else [
        n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in names if n not in MASK_GENERATORS]
    if unknown or not names:
        parser.error(f"unknown --strategies {unknown or args.strategies!r}; expected names from "
                     f"{', '.join(sorted(MASK_GENERATORS))}")
    args.strategies = names
    if os.path.exists(args.output) and not args.overwrite:
        parser.error(f"--output {args.output!r} already exists; choose another file or pass --overwrite")
    return args


def run_masks(args):
    """Write the mask gallery PNG; returns its path."""
    import numpy as np
    import skimage.data
    import skimage.transform

    from keras_mim.masking import get_mask_generator
    from keras_mim.viz import plot_mask_gallery

    loader = getattr(skimage.data, args.image, None)
    if loader is None:
        raise SystemExit(f"keras-mim masks: error: scikit-image has no sample image {args.image!r}")
    image = np.asarray(loader(), "float32")
    image = image / 255.0 if image.max() > 1 else image
    h, w = image.shape[:2]
    side = min(h, w)  # centre square crop, then resize
    image = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    image = skimage.transform.resize(image, (args.image_size, args.image_size), anti_aliasing=True)
    generators = {}
    for i, name in enumerate(args.strategies):
        kwargs = {} if args.mask_ratio is None else {"mask_ratio": args.mask_ratio}
        generators[name] = get_mask_generator(name, seed=args.seed + i, patch_size=args.patch_size, **kwargs)
    plot_mask_gallery(image, generators, patch_size=args.patch_size, num_samples=args.samples,
                      path=args.output)
    print(f"keras-mim: wrote {args.output} ({len(generators)} strategies)", flush=True)
    return args.output


def _resolve_pretrain(parser, args):
    """Fill in dataset-dependent defaults and check every argument; exits with status 2
    (`parser.error`) on a problem, before anything is imported, loaded or written."""
    from keras_mim.models.presets import PRESETS
    from keras_mim.utils import check_mask_ratio, to_2tuple

    if args.preset is None:
        args.preset = DEFAULT_PRESETS[args.dataset]
    if args.preset not in PRESETS:
        listing = "\n".join(f"  {name}: {spec['description']}" for name, spec in PRESETS.items())
        parser.error(f"unknown preset {args.preset!r}; available presets:\n{listing}")
    encoder = PRESETS[args.preset]["encoder"]
    if args.image_size is None:
        args.image_size = to_2tuple(encoder["image_size"], "image_size")[0]
    patch = to_2tuple(encoder["patch_size"], "patch_size")
    if args.image_size % patch[0] or args.image_size % patch[1]:
        parser.error(
            f"--image-size {args.image_size} is not divisible by the patch size {patch} of "
            f"preset {args.preset!r}"
        )
    grid = (args.image_size // patch[0], args.image_size // patch[1])
    if args.dataset == "photos" and args.image_size > 512:
        parser.error(f"--image-size must be at most 512 for the photos dataset, got {args.image_size}")
    num_tokens = grid[0] * grid[1]
    try:
        check_mask_ratio(args.mask_ratio, num_tokens, name="--mask-ratio")
    except ValueError as error:
        parser.error(str(error).replace("`", ""))
    _check_masking(parser, args.masking, args.mask_ratio, patch[0], grid)
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS[args.dataset]
    if args.dataset == "digits":
        from keras_mim.data.sample_datasets import NUM_DIGITS

        available = NUM_DIGITS - NUM_HELDOUT
        if args.num_images is None:
            args.num_images = available
        elif args.num_images > available:
            parser.error(
                f"--num-images {args.num_images} is more than the {available} digits available "
                f"for training ({NUM_DIGITS} minus {NUM_HELDOUT} held out)"
            )
    elif args.num_images is None:
        from keras_mim.data.sample_datasets import DEFAULT_NUM_PHOTO_CROPS

        args.num_images = DEFAULT_NUM_PHOTO_CROPS
    if not math.isfinite(args.weight_decay) or args.weight_decay < 0:
        parser.error(f"--weight-decay must be a non-negative number, got {args.weight_decay}")
    if args.figure_every is None:
        args.figure_every = max(1, args.epochs // 5)
    if args.output is None:
        args.output = os.path.join("runs", "pretrain-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    output = os.path.abspath(args.output)
    if os.path.exists(output):
        if not os.path.isdir(output):
            parser.error(f"--output {args.output!r} exists and is not a folder")
        entries = os.listdir(output)
        if entries and not args.overwrite:
            parser.error(
                f"run folder {args.output!r} already exists and is not empty ({len(entries)} "
                "entries); choose another --output or pass --overwrite to replace this "
                "command's files in it"
            )
    if args.backend is not None and importlib.util.find_spec(args.backend) is None:
        parser.error(f"--backend {args.backend}: the {args.backend!r} package is not installed")
    args.num_tokens = num_tokens
    return args


def _check_masking(parser, name, mask_ratio, patch_size, grid):
    """Exit with status 2 unless strategy `name` exists and can mask `grid`."""
    from keras_mim.masking import MASK_GENERATORS, get_mask_generator

    if name not in MASK_GENERATORS:
        parser.error(f"unknown --masking {name!r}; expected one of {', '.join(sorted(MASK_GENERATORS))}")
    try:
        generator = get_mask_generator(name, mask_ratio=mask_ratio, patch_size=patch_size)
        if generator.grid_rank == 3:
            raise ValueError("it masks video token grids (T, gh, gw), not images")
        generator.num_visible(grid)
    except (ValueError, TypeError) as error:
        parser.error(f"--masking {name} cannot mask the {grid[0]}x{grid[1]} token grid: " + str(error).replace("`", ""))


# ---------------------------------------------------------------------------- backend switch
def _switch_backend(args, argv, from_command_line):
    """Restart with `KERAS_BACKEND=args.backend` if it differs from the running backend.

    Returns None when no restart is needed, else the child's exit status (only when
    `main` was called with an explicit `argv`; from the command line the process is
    replaced and this never returns)."""
    import keras

    current = keras.backend.backend()
    if args.backend is None or args.backend == current:
        return None
    if os.environ.get(_REEXEC_ENV) == args.backend:
        # Restarted with KERAS_BACKEND set, yet Keras runs another backend.
        print(
            f"keras-mim: error: restarted with KERAS_BACKEND={args.backend} but Keras still "
            f"uses {current!r}.",
            file=sys.stderr,
        )
        return 1
    env = dict(os.environ, KERAS_BACKEND=args.backend, **{_REEXEC_ENV: args.backend})
    command = [sys.executable, "-m", "keras_mim.cli", *argv]
    print(f"keras-mim: switching backend {current} -> {args.backend} (restarting the command)", flush=True)
    if from_command_line:
        sys.stderr.flush()
        os.execve(sys.executable, command, env)
    return subprocess.call(command, env=env)


def _backend_version(name):
    module = sys.modules.get(name)  # already imported by Keras; never imported here
    return getattr(module, "__version__", None)


# ---------------------------------------------------------------------------- pretrain
def _load_data(args):
    from keras_mim.data import load_sample_images

    size = args.image_size
    if args.dataset == "digits":
        # One seeded permutation of all digits: the first NUM_HELDOUT are held out.
        images = load_sample_images("digits", image_size=size, num_images=NUM_HELDOUT + args.num_images,
                                    seed=args.seed)
        return images[NUM_HELDOUT:], images[:NUM_HELDOUT]
    train = load_sample_images("photos", image_size=size, num_images=args.num_images, seed=args.seed)
    # Other random crops (another seed) of the same photos.
    heldout = load_sample_images("photos", image_size=size, num_images=NUM_HELDOUT, seed=args.seed + 1_000_003)
    return train, heldout


def _clean_run_folder(output):
    """With --overwrite: remove the files this command writes (figures included)."""
    for name in ("model.keras", "config.json", "history.json", "history.csv", "reconstructions.png"):
        path = os.path.join(output, name)
        if os.path.isfile(path):
            os.remove(path)
    figures = os.path.join(output, "figures")
    if os.path.isdir(figures):
        for name in os.listdir(figures):
            path = os.path.join(figures, name)
            if name.startswith("reconstruction_epoch") and name.endswith(".png") and os.path.isfile(path):
                os.remove(path)


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def run_pretrain(args):
    """Train as `args` say (already checked by `_resolve_pretrain`); returns the history dict."""
    import keras
    import numpy as np

    import keras_mim
    from keras_mim.callbacks import ReconstructionFigureCallback
    from keras_mim.models import MaskedAutoencoder
    from keras_mim.viz import plot_reconstructions, reconstruction_panels

    start = time.perf_counter()
    backend = keras.backend.backend()
    output = os.path.abspath(args.output)
    print(f"keras-mim: backend {backend} (keras {keras.__version__}); run folder {output}", flush=True)

    keras.utils.set_random_seed(args.seed)
    train, heldout = _load_data(args)
    num_channels = int(train.shape[-1])
    model = MaskedAutoencoder.from_preset(
        args.preset, image_size=args.image_size, num_channels=num_channels,
        mask_ratio=args.mask_ratio, mask_generator=args.masking,
        norm_pix_loss=args.norm_pix_loss == "true", seed=args.seed,
    )
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = max(1, round(WARMUP_FRACTION * total_steps)) if total_steps > 1 else 0
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else args.learning_rate,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.01,
        warmup_target=args.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=args.weight_decay, beta_1=0.9, beta_2=0.95,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    jit_compile = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    model.compile(optimizer=optimizer, jit_compile=jit_compile)

    os.makedirs(output, exist_ok=True)
    if args.overwrite:
        _clean_run_folder(output)
    rng = np.random.default_rng(args.seed)
    noise = rng.random((len(heldout), args.num_tokens)).astype("float32")  # fixed masks for figures

    config = {
        "command": "pretrain",
        "args": {k: v for k, v in vars(args).items() if k not in ("num_tokens", "command")},
        "resolved": {
            "backend": backend,
            "output_dir": output,
            "num_channels": num_channels,
            "num_tokens": args.num_tokens,
            "num_train_images": int(len(train)),
            "num_heldout_images": int(len(heldout)),
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "warmup_steps": warmup_steps,
            "lr_schedule": "linear warmup 0 -> learning_rate, then cosine decay to 1% of it",
            "optimizer": {"name": "AdamW", "beta_1": 0.9, "beta_2": 0.95,
                          "weight_decay": args.weight_decay, "no_weight_decay": NO_WEIGHT_DECAY},
            "jit_compile": jit_compile,
            "model_parameters": None,
        },
        "versions": {
            "keras_mim": keras_mim.__version__,
            "keras": keras.__version__,
            backend: _backend_version(backend),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    model.build()
    config["resolved"]["model_parameters"] = int(model.count_params())
    _write_json(os.path.join(output, "config.json"), config)

    epoch_times = []

    class _EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self._t)

    callbacks = [_EpochTimer(), keras.callbacks.CSVLogger(os.path.join(output, "history.csv"))]
    if args.figure_every:
        callbacks.append(ReconstructionFigureCallback(
            heldout, os.path.join(output, "figures"), every_n_epochs=args.figure_every,
            noise=noise, seed=args.seed, max_images=4, overwrite=args.overwrite,
        ))
    print(
        f"keras-mim: {args.preset} ({config['resolved']['model_parameters']:,} parameters) on "
        f"{len(train)} {args.dataset} images {tuple(train.shape[1:])}, {args.epochs} epoch(s) x "
        f"{steps_per_epoch} steps, batch {args.batch_size}, mask ratio {args.mask_ratio}, "
        f"lr {args.learning_rate:g}",
        flush=True,
    )
    fit_start = time.perf_counter()
    history = model.fit(
        train, batch_size=args.batch_size, epochs=args.epochs, shuffle=True,
        callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
    )
    fit_time = time.perf_counter() - fit_start

    model.save(os.path.join(output, "model.keras"))
    # Pixel-space MSE on the hidden pixels of the held-out images, with the figure's masks
    # (with --norm-pix-loss true the reconstruction borrows each patch's own statistics).
    panels = reconstruction_panels(model, heldout, noise=noise)
    hidden = np.broadcast_to(panels["mask"], panels["original"].shape) > 0.5
    heldout_mse = float(np.mean((panels["reconstruction"] - panels["original"])[hidden] ** 2))
    plot_reconstructions(
        model, heldout, noise=noise, path=os.path.join(output, "reconstructions.png"),
        max_images=len(heldout),
        title=f"{args.preset}, {args.dataset}, {args.epochs} epochs ({backend}): held-out images",
    )
    losses = [float(v) for v in history.history["loss"]]
    record = {
        "loss": losses,
        "epoch_time_s": [round(t, 3) for t in epoch_times],
        "final_loss": losses[-1],
        "heldout_pixel_mse": heldout_mse,
        "fit_time_s": round(fit_time, 3),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "backend": backend,
        "args": config["args"],
    }
    _write_json(os.path.join(output, "history.json"), record)
    print(
        f"keras-mim: done in {record['wall_time_s']:.1f} s (training {fit_time:.1f} s); final loss "
        f"{losses[-1]:.4f}, held-out pixel MSE {heldout_mse:.4f}; wrote {output}",
        flush=True,
    )
    return record


# ---------------------------------------------------------------------------- entry point
def main(argv=None):
    """Run the `keras-mim` command; `argv` defaults to `sys.argv[1:]`. Returns the exit
    status (argument errors exit with status 2 through `SystemExit`)."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    # command -> (check its arguments, run it); looked up here so tests can patch either
    commands = {"pretrain": (_resolve_pretrain, run_pretrain), "masks": (_resolve_masks, run_masks)}
    resolve, run = commands[args.command]
    resolve(parser.subparsers[args.command], args)
    status = _switch_backend(args, argv, from_command_line)
    if status is not None:
        return status
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
