"""`keras-mim masks`: a PNG gallery of every masking strategy on a real photo."""

import os

from keras_mim.cli.common import HelpFormatter, add_backend_argument, non_negative_int, positive_int, ratio


def add_masks_parser(commands):
    m = commands.add_parser(
        "masks",
        help="draw every masking strategy on a real image (a PNG gallery).",
        description="Draw masks of each strategy over a sample photo bundled with scikit-image; "
                    "one row per strategy (video strategies show successive time slices).",
        formatter_class=HelpFormatter,
    )
    add_backend_argument(m, "Keras backend (see pretrain)")
    m.add_argument("--image", default="astronaut",
                   help="scikit-image sample photo (astronaut, coffee, chelsea, rocket, ...)")
    m.add_argument("--image-size", type=positive_int, default=224, help="image side in pixels")
    m.add_argument("--patch-size", type=positive_int, default=16, help="patch side in pixels")
    m.add_argument("--strategies", default=None,
                   help="comma-separated strategy names; default: all of keras_mim.masking.MASK_GENERATORS")
    m.add_argument("--mask-ratio", type=ratio, default=None,
                   help="hidden fraction for every strategy that takes one; default: each strategy's own")
    m.add_argument("--samples", type=positive_int, default=4, help="masks drawn per strategy")
    m.add_argument("--seed", type=non_negative_int, default=0, help="seed of the masks")
    m.add_argument("--output", default="masks.png", help="PNG file to write")
    m.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    return m


def resolve_masks(parser, args):
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


