"""`keras-mim masks`: a PNG gallery of every masking strategy on a real image."""

import os

from keras_mim import registry_snapshot
from keras_mim.cli.common import (
    HelpFormatter,
    add_backend_argument,
    check_writable,
    help_listing,
    non_negative_int,
    positive_int,
    ratio,
)


def add_masks_parser(commands):
    m = commands.add_parser(
        "masks",
        help="draw every masking strategy on a real image (a PNG gallery).",
        description="Draw masks of each strategy over an image (a file of yours, or a sample photo "
                    "bundled with scikit-image); one row per strategy (video strategies show successive "
                    "time slices, the multi-modal one its modalities).",
        epilog=help_listing("strategies (--strategies NAME,...)", registry_snapshot.MASK_STRATEGIES),
        formatter_class=HelpFormatter,
    )
    add_backend_argument(m, "Keras backend (see pretrain)")
    m.add_argument("--image", default="astronaut",
                   help="an image file (png, jpg, tif, ...; centre-cropped to a square) or the name of a "
                        "scikit-image sample photo (astronaut, coffee, chelsea, rocket, ...)")
    m.add_argument("--image-size", type=positive_int, default=224, help="image side in pixels")
    m.add_argument("--patch-size", type=positive_int, default=16, help="patch side in pixels")
    m.add_argument("--strategies", default=None,
                   help="comma-separated strategy names (listed below); default: all of them")
    m.add_argument("--mask-ratio", type=ratio, default=None,
                   help="hidden fraction for every strategy that takes one; default: each strategy's own")
    m.add_argument("--samples", type=positive_int, default=4, help="masks drawn per strategy")
    m.add_argument("--seed", type=non_negative_int, default=0, help="seed of the masks")
    m.add_argument("--output", default="masks.png", help="PNG file to write")
    m.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    return m


def resolve_masks(parser, args):
    """Check `masks` arguments before anything heavy; exits with status 2 on a problem."""
    strategies = registry_snapshot.MASK_STRATEGIES
    if args.image_size % args.patch_size:
        parser.error(f"--image-size {args.image_size} is not divisible by --patch-size {args.patch_size}")
    names = list(strategies) if args.strategies is None else [
        n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in names if n not in strategies]
    if unknown or not names:
        parser.error(f"unknown --strategies {unknown or args.strategies!r}; expected names from "
                     f"{', '.join(sorted(strategies))}")
    args.strategies = names
    check_image(parser, args.image)
    if os.path.isdir(args.output):
        parser.error(f"--output {args.output!r} is a folder; give the PNG file to write, e.g. "
                     f"{os.path.join(args.output, 'masks.png')!r}")
    if os.path.exists(args.output) and not args.overwrite:
        parser.error(f"--output {args.output!r} already exists; choose another file or pass --overwrite")
    check_writable(parser, os.path.dirname(os.path.abspath(args.output)), "--output")
    return args


def check_image(parser, image):
    """--image: a readable image file, or else a scikit-image sample name (exit 2 if neither)."""
    if os.path.exists(image):
        from PIL import Image, UnidentifiedImageError

        if os.path.isdir(image):
            parser.error(f"--image {image!r} is a folder; give an image file or a scikit-image sample name")
        try:
            with Image.open(image) as opened:
                opened.load()
        except (OSError, UnidentifiedImageError, ValueError) as error:
            parser.error(f"--image {image!r} cannot be read as an image ({error})")
        return
    import skimage.data

    looks_like_a_path = os.sep in image or "/" in image or bool(os.path.splitext(image)[1])
    if looks_like_a_path or not callable(getattr(skimage.data, image, None)):
        parser.error(f"--image {image!r}: no such file, and not a scikit-image sample photo (astronaut, "
                     "camera, cat, chelsea, coffee, rocket, ...)")


def load_image(name):
    """The --image as float32 `(H, W, C)` in [0, 1]: the file, else the scikit-image sample."""
    import numpy as np

    if os.path.isfile(name):
        from PIL import Image, ImageOps

        from keras_mim.data.decoding import pil_to_array

        with Image.open(name) as opened:
            return pil_to_array(ImageOps.exif_transpose(opened))
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)(), "float32")
    return image / 255.0 if image.max() > 1 else image


def run_masks(args):
    """Write the mask gallery PNG; returns its path."""
    import skimage.transform

    from keras_mim.masking import get_mask_generator
    from keras_mim.viz import plot_mask_gallery

    image = load_image(args.image)
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
