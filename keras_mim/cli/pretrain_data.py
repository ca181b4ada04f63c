"""Where `keras-mim pretrain` gets its data: the built-in sets, `--data` (a folder or a
TensorFlow Datasets name, resolved by `data_source` before any pixel is read), and the view
pairs of the two-view methods."""

import math
import os
import warnings

from keras_mim.cli.pretrain_multimodal import paired_source
from keras_mim.cli.pretrain_options import NUM_HELDOUT, SIAMMAE_CLIP_FRAMES, VIDEO_DATASET
from keras_mim.cli.run_folder import SKIPPED_FILES
from keras_mim.models.methods import get_method_spec

AUDIO_SAMPLE_RATE = 16000  # Audio-MAE's
MIN_UPDATES = 100  # optimizer updates in a whole `--data` run below which it is warned to learn little


def load_data(args):
    """The training data and the held-out images for the figures, as `(train, heldout,
    skipped_files)`: `train` a numpy array (or a batched tf.data.Dataset of known
    cardinality), `heldout` a numpy batch, `skipped_files` the (path, reason) pairs of
    input files the data source could not read (written to skipped_files.txt). The one
    place the command gets its data."""
    from keras_mim.data import load_sample_images

    size = args.image_size
    kind = get_method_spec(args.method).data
    if kind == "audio":
        return audio_data(args)
    if kind == "points":
        return point_data(args)
    if kind == "paired":
        return paired_data(args)
    if args.data is not None:
        return user_data(args)
    if args.dataset == "multispectral":
        return multispectral_data(args)
    if args.dataset == VIDEO_DATASET:
        from keras_mim.data import moving_shapes

        # SiamMAE picks two frames of 16-frame clips (a gap of 4 to 15 frames).
        frames = args.num_frames or SIAMMAE_CLIP_FRAMES
        clips = moving_shapes(NUM_HELDOUT + args.num_images, num_frames=frames, image_size=size, seed=args.seed)
        return clips[NUM_HELDOUT:], clips[:NUM_HELDOUT], []
    if args.dataset == "digits":
        # The train split of the fixed labelled split (so probes, k-NN and fine-tuning on the
        # test split score images the encoder never saw); figures use test images.
        from keras_mim.data import load_labelled_digits

        train = load_labelled_digits("train", image_size=size, seed=args.seed)[0][: args.num_images]
        return train, load_labelled_digits("test", image_size=size, seed=args.seed)[0][:NUM_HELDOUT], []
    train = load_sample_images("photos", image_size=size, num_images=args.num_images, seed=args.seed)
    # Other random crops (another seed) of the same photos.
    heldout = load_sample_images("photos", image_size=size, num_images=NUM_HELDOUT, seed=args.seed + 1_000_003)
    return train, heldout, []


def data_source(args, seed):
    """`--data` resolved without reading pixels: `((train, heldout), num_train)` with
    `train` / `heldout` an `ImageFolder` view each (held-out images spread evenly over the
    folder, the rest shuffled with `seed`), or tfds split strings (the first images held
    out). Raises ValueError / FileNotFoundError / ImportError naming the problem."""
    kind = get_method_spec(args.method).data
    if kind == "audio":  # audio files, point clouds: read once, kept in memory
        from keras_mim.data.audio_folder import AudioFolder

        folder = scan_folder(lambda: AudioFolder(args.data, sample_rate=AUDIO_SAMPLE_RATE), "audio files")
        return folder, len(folder) - NUM_HELDOUT
    if kind == "points":
        from keras_mim.data.point_folder import PointFolder

        folder = scan_folder(lambda: PointFolder(args.data), "point clouds")
        return folder, len(folder) - NUM_HELDOUT
    if kind == "paired":
        return paired_source(args)
    if args.data.startswith("tfds:"):
        from keras_mim.data.images import tfds_builder

        builder = tfds_builder(args.data, args.data_dir)
        splits = builder.info.splits
        if args.split not in splits:
            raise ValueError(f"--split {args.split!r} is not a split of {args.data!r}; it has {sorted(splits)}")
        available = int(splits[args.split].num_examples) - NUM_HELDOUT
        if available < 1:
            raise ValueError(f"split {args.split!r} holds {available + NUM_HELDOUT} images; more than "
                             f"{NUM_HELDOUT} are needed ({NUM_HELDOUT} are held out for the figures)")
        return (f"{args.split}[{NUM_HELDOUT}:]", f"{args.split}[:{NUM_HELDOUT}]"), available
    from keras_mim.data import ImageFolder

    folder = scan_folder(lambda: ImageFolder(args.data), "images")
    held, rest = heldout_split(len(folder), seed)
    return (folder.subset(rest), folder.subset(held)), len(rest)


def scan_folder(make_folder, what):
    """`make_folder()` (an `ImageFolder`, `AudioFolder` or `PointFolder` scan) run quietly: what it
    skipped is said in one line when the data are read, with the list's path. Raises ValueError
    unless it holds more than NUM_HELDOUT readable `what`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = make_folder()
    if len(folder) <= NUM_HELDOUT:
        raise ValueError(f"the folder holds {len(folder)} readable {what}; more than {NUM_HELDOUT} are needed "
                         f"({NUM_HELDOUT} are held out for the figures)")
    return folder


def heldout_split(count, seed):
    """`(held, rest)` indices of a folder of `count` files: NUM_HELDOUT spread evenly over it
    (held out for the figures), the others shuffled with `seed`."""
    import numpy as np

    held = np.unique(np.linspace(0, count - 1, NUM_HELDOUT).round().astype(int))
    rest = np.setdiff1d(np.arange(count), held)
    return held, rest[np.random.default_rng(seed).permutation(len(rest))]


def folder_order(args):
    """The `--data` folder's files to read (an `AudioFolder` / `PointFolder` in `args._data`):
    NUM_HELDOUT spread evenly over the folder first (held out), then `--num-images` of the
    others shuffled with the seed; and the files its scan skipped (one warning line)."""
    import numpy as np

    folder = args._data
    if folder.skipped:
        print(f"keras-mim: warning: {folder.report(listed_in=SKIPPED_FILES)}", flush=True)
    held, rest = heldout_split(len(folder), args.seed)
    return np.concatenate([held, rest[: args.num_images]]), list(folder.skipped)


def audio_data(args):
    """Spectrograms `(n, frames, mel_bins, 1)` of the run's audio: spoken digits, tones, or the
    `--data` folder (each file's start, cut or zero-padded to the preset's frames; files
    that do not read are listed in skipped_files.txt), normalised with the training set's
    log-mel mean and std (kept in `args._spectrogram_stats` for the model, as Audio-MAE
    computes them per dataset). The first NUM_HELDOUT clips are held out."""
    import keras
    import numpy as np

    from keras_mim.data.sample_audio import spoken_digits, tone_clips
    from keras_mim.layers import LogMelSpectrogram
    from keras_mim.models.presets import PRESETS

    frames, bins = PRESETS[args.preset]["encoder"]["image_size"]
    raw = LogMelSpectrogram(sample_rate=AUDIO_SAMPLE_RATE, num_mel_bins=bins, num_frames=frames, mean=0.0, std=0.5)
    samples = raw.num_samples()  # just enough for `frames` Kaldi frames
    count, skipped = NUM_HELDOUT + args.num_images, []
    if args.data is not None:
        order, skipped = folder_order(args)
        waves = args._data.read(order, samples)
    elif args.dataset == "spoken-digits":
        print(f"keras-mim: synthesising {count} spoken digits with espeak-ng ...", flush=True)
        waves = spoken_digits(count, sample_rate=AUDIO_SAMPLE_RATE, seed=args.seed)[0][:, :samples]
    else:
        waves = tone_clips(count, sample_rate=AUDIO_SAMPLE_RATE, seconds=samples / AUDIO_SAMPLE_RATE,
                           seed=args.seed)[0]
    logmel = np.concatenate([keras.ops.convert_to_numpy(raw(waves[i : i + 256])) for i in range(0, len(waves), 256)])
    train = logmel[NUM_HELDOUT:]
    mean, std = float(train.mean()), float(train.std())
    args._spectrogram_stats = (mean, std)
    normalised = ((logmel - mean) / (2.0 * std)).astype("float32")
    return normalised[NUM_HELDOUT:], normalised[:NUM_HELDOUT], skipped


def point_data(args):
    """Point clouds `(n, num_points, 3)` of the run: generated shapes, or the `--data` folder
    (each cloud sampled to the preset's points and normalised; files that do not read are
    listed in skipped_files.txt). The first NUM_HELDOUT clouds are held out."""
    from keras_mim.data.sample_points import shape_clouds
    from keras_mim.models.presets import PRESETS

    num_points = PRESETS[args.preset]["encoder"]["num_points"]
    skipped = []
    if args.data is not None:
        order, skipped = folder_order(args)
        clouds = args._data.read(order, num_points, seed=args.seed)
    else:
        clouds = shape_clouds(NUM_HELDOUT + args.num_images, num_points=num_points, seed=args.seed)[0]
    return clouds[NUM_HELDOUT:], clouds[:NUM_HELDOUT], skipped


def paired_data(args):
    """Paired modalities `(train, heldout, skipped)`, dicts of arrays: the generated scenes
    (`paired_scenes`, the first NUM_HELDOUT held out) or the `--data` folder (NUM_HELDOUT items
    spread over it held out, `--num-images` of the others in a seeded order)."""
    from keras_mim.data.paired_scenes import paired_scenes

    size = args.image_size
    if args.data is None:
        scenes = paired_scenes(NUM_HELDOUT + args.num_images, image_size=size, seed=args.seed)
        return ({k: v[NUM_HELDOUT:] for k, v in scenes.items()}, {k: v[:NUM_HELDOUT] for k, v in scenes.items()}, [])
    order, skipped = folder_order(args)
    arrays = args._data.arrays(image_size=size, indices=order)
    return {k: v[NUM_HELDOUT:] for k, v in arrays.items()}, {k: v[:NUM_HELDOUT] for k, v in arrays.items()}, skipped


def multispectral_data(args):
    """SatMAE's generated tiles `(train, heldout, [])`: `multispectral_scenes` cut to the 10
    bands SatMAE keeps, reflectance as is (the model normalises each band with the training
    set's statistics, `args._band_stats`)."""
    from keras_mim.data.multispectral import SATMAE_BANDS, band_statistics, multispectral_scenes

    tiles = multispectral_scenes(NUM_HELDOUT + args.num_images, image_size=args.image_size, seed=args.seed)[0]
    tiles = tiles[..., list(SATMAE_BANDS)]
    args._band_stats = band_statistics(tiles[NUM_HELDOUT:])
    return tiles[NUM_HELDOUT:], tiles[:NUM_HELDOUT], []


def user_data(args):
    """`--data`: a tf.data pipeline of full batches (repeated, `steps` per epoch, so files
    skipped while decoding never end an epoch early) and the held-out images as numpy."""
    import numpy as np

    from keras_mim.data import image_dataset

    train_source, heldout_source = args._data
    common = dict(image_size=args.image_size, data_dir=args.data_dir)
    if isinstance(train_source, str):  # tfds split strings
        heldout = image_dataset(args.data, batch_size=NUM_HELDOUT, shuffle=False, split=heldout_source, **common)
        train_source, extra = args.data, {"split": train_source}
    else:
        heldout = image_dataset(heldout_source, batch_size=NUM_HELDOUT, shuffle=False, **common)
        train_source, extra = train_source.subset(range(args.num_images)), {}
    heldout = np.concatenate([np.asarray(batch) for batch in heldout])[:NUM_HELDOUT]
    common["num_channels"] = heldout.shape[-1] if heldout.shape[-1] in (1, 3) else None  # band stacks as read
    augmentation = None if args.augmentation == "none" else args.augmentation
    train = image_dataset(train_source, batch_size=args.batch_size, augmentation=augmentation,
                          shuffle=True, seed=args.seed, drop_remainder=True, **common, **extra)
    steps = args.num_images // args.batch_size
    skipped = list(getattr(train_source, "skipped", []))
    if not isinstance(train_source, str):  # a folder
        log = os.path.join(os.path.abspath(args.output), SKIPPED_FILES)
        if train_source.report():  # one line for all the files the scan skipped
            print(f"keras-mim: warning: {train_source.report(listed_in=log)}", flush=True)
        train_source.skipped_log = log  # files failing to decode during training are added to it
    if get_method_spec(args.method).data == "multispectral":  # the model normalises each band
        args._band_stats = band_statistics_of(train_source, extra, common)
    hint = few_updates_hint(args.num_images, args.batch_size, args.epochs, args.gradient_accumulation)
    if hint:
        print(hint, flush=True)
    return train.repeat().take(steps), heldout, skipped


def band_statistics_of(source, extra, common, count=256):
    """Per-band mean and std of the first `count` training images of `source`, read without
    augmentation (SatMAE's normalisation statistics of a `--data` set)."""
    import numpy as np

    from keras_mim.data import image_dataset
    from keras_mim.data.multispectral import band_statistics

    if not isinstance(source, str):  # a folder (a tfds name reads its split's first images)
        source = source.subset(range(min(count, len(source))))
    batches = image_dataset(source, batch_size=64, shuffle=False, **common, **extra)
    images = np.concatenate([np.asarray(batch) for batch in batches.take(-(-count // 64))])[:count]
    return band_statistics(images)


def few_updates_hint(num_images, batch_size, epochs, accumulation=1):
    """A one-line warning when a run makes fewer than `MIN_UPDATES` optimizer updates in all
    (e.g. 40 images, 8 held out, at the default batch of 32: one step per epoch, and figures
    of noise), with a `--batch-size` (at least 8 steps per epoch, batches of 4 or more) and
    `--epochs` that make about 5x that many; None when there are enough.

    Examples:
        >>> few_updates_hint(1000, 32, 20) is None
        True
        >>> print(few_updates_hint(31, 8, 20))  # doctest: +ELLIPSIS
        keras-mim: warning: only 60 optimizer updates in all ... Try --batch-size 4 --epochs 80 ...
    """
    steps = num_images // batch_size
    updates = steps * epochs // accumulation
    if updates >= MIN_UPDATES:
        return None
    batch = batch_size
    while batch > 4 and num_images // batch < 8:
        batch = max(4, batch // 2)
    new_steps = max(1, num_images // batch)
    new_epochs = max(epochs, 10 * math.ceil(5 * MIN_UPDATES * accumulation / new_steps / 10))
    return (f"keras-mim: warning: only {updates} optimizer updates in all ({steps} steps per epoch of "
            f"{num_images} images at --batch-size {batch_size}, x {epochs} epochs"
            + (f", / {accumulation} accumulated" if accumulation > 1 else "") + "): too few to learn much, "
            "and the reconstruction figures may show little but noise. Try --batch-size "
            f"{batch} --epochs {new_epochs} ({new_steps} steps per epoch, {new_steps * new_epochs // accumulation} "
            "updates).")


def view_pairs(args, train, heldout):
    """Two-view methods: a tf.data pipeline of fresh view pairs for training, and fixed
    held-out pairs as a dict of arrays. `train` is an array of images or clips, or the
    batched pipeline of `--data`, whose images it unbatches."""
    import numpy as np

    from keras_mim.data import view_dataset

    views = get_method_spec(args.method).views
    options = {"min_gap": 4, "max_gap": SIAMMAE_CLIP_FRAMES - 1} if views == "siammae" else {}
    if hasattr(train, "unbatch"):  # --data: full batches of images, `steps` of them an epoch
        train = train.unbatch()
    train = view_dataset(train, method=views, image_size=args.image_size, batch_size=args.batch_size,
                         seed=args.seed, shuffle=True, **options)
    fixed = view_dataset(heldout, method=views, image_size=args.image_size, batch_size=len(heldout),
                         seed=args.seed + 1_000_003, **options)
    heldout = {k: np.asarray(v) for k, v in next(iter(fixed)).items()}
    return train, heldout
