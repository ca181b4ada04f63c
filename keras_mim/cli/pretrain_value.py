"""The value check at the end of `keras-mim pretrain --data FOLDER`: when the folder's images
sit in class subfolders, k-NN accuracy of the pretrained encoder against the same encoder at
its random initialisation (the run's own starting point), so the user sees whether
pretraining helped on their data before spending more time on it. And `--monitor-every N`:
the same labelled images probed every N epochs while the run trains (a scaling curve in
history.csv / history.json / monitor.json)."""

import os

#: At most this many labelled images form the k-NN bank and the held-out images it classifies
#: (a random subset of each split, so the check takes seconds on any folder).
MAX_BANK, MAX_HELDOUT = 2000, 500


def add_value_check_argument(p):
    p.add_argument("--value-check", choices=("auto", "off"), default="auto",
                   help="auto: when --data is a folder of class subfolders, end with k-NN accuracy of "
                        "the pretrained encoder vs the same encoder at random init (the run's start), "
                        f"on a held-out part of the labelled images (at most {MAX_BANK} + {MAX_HELDOUT}); "
                        "printed and written to value_check.json")
    p.add_argument("--monitor-every", type=int, default=0, metavar="N",
                   help="every N epochs (and after the last), probe the encoder on labelled images: "
                        "ridge linear probe (best block on a validation split of the train images) and "
                        "k-NN top-1 on held-out ones, added to history.csv (probe_top1, probe_last_top1, "
                        "knn_top1; every block's in monitor.json), a few seconds each time; 0: off (default)")
    p.add_argument("--monitor-data", default=None, metavar="FOLDER",
                   help="labelled images for --monitor-every: a folder of class subfolders (its train / test "
                        f"split, at most {MAX_BANK} + {2 * MAX_HELDOUT} images); default: --data when it has "
                        "class subfolders")


def labelled_subset(path, image_size, num_channels, seed, max_heldout=MAX_HELDOUT):
    """`(x_bank, y_bank, x_heldout, y_heldout, class_names)` from the class subfolders of the
    folder `path` (its fixed labelled split, each part randomly cut to its cap), or None when
    the folder has no class subfolders."""
    import warnings

    import numpy as np

    from keras_mim.evaluation.labelled_data import read_labelled_folder, scan_labelled_folder

    with warnings.catch_warnings():  # unreadable files: pretraining listed them already
        warnings.simplefilter("ignore")
        try:
            bank, heldout = scan_labelled_folder(path, name="--data")
        except ValueError:  # images not in class subfolders, one class only: nothing to check with
            return None
        rng = np.random.default_rng(seed)
        parts = []
        for view, cap in ((bank, MAX_BANK), (heldout, max_heldout)):
            if len(view) > cap:
                view = view.subset(np.sort(rng.choice(len(view), cap, replace=False)))
            parts += read_labelled_folder(view, image_size, num_channels=num_channels)
    return (*parts, bank.class_names)


def run_value_check(args, model, output):
    """Print and write (value_check.json) the check; returns its record, or None when it does
    not apply (no --data folder, no class subfolders, --value-check off)."""
    from keras_mim.cli.common import write_json
    from keras_mim.evaluation.value_check import pretraining_value

    if args.value_check == "off" or args.data is None or not os.path.isdir(args.data):
        return None
    encoder = model.encoder
    data = labelled_subset(args.data, encoder.image_size, encoder.num_channels, args.seed)
    if data is None:
        return None
    x_bank, y_bank, x_heldout, y_heldout, class_names = data
    try:
        result = pretraining_value(model, x_bank, y_bank, x_heldout, y_heldout, seed=args.seed)
    except ValueError as error:  # the model is saved already: say why, do not fail the run
        print(f"keras-mim: value check skipped: {error}", flush=True)
        return None
    record = {**result, "classes": list(class_names),
              "what": "k-NN top-1 (cosine, weighted votes, T 0.07) on held-out labelled images of --data; "
                      "labels were not used in pretraining, the images were"}
    write_json(os.path.join(output, "value_check.json"), record)
    print(f"keras-mim: value check on the {len(class_names)} class subfolders of --data (k-NN, k = {result['k']}, "
          f"{result['num_train']} labelled / {result['num_test']} held-out images): pretrained "
          f"{result['pretrained']:.3f} vs random init {result['random_init']:.3f} "
          f"({100 * result['gain']:+.1f} points)", flush=True)
    return record


def check_monitor(parser, args):
    """--monitor-every / --monitor-data: a clear error before anything is loaded."""
    if args.monitor_every < 0:
        parser.error(f"--monitor-every must be 0 (off) or a positive number of epochs, got {args.monitor_every}")
    if args.monitor_data is not None and not args.monitor_every:
        parser.error("--monitor-data applies with --monitor-every N only")
    if args.monitor_data is not None and not os.path.isdir(args.monitor_data):
        parser.error(f"--monitor-data {args.monitor_data!r} is not a folder (expected a folder of class subfolders)")
    if args.monitor_every and args.monitor_data is None and not (args.data and os.path.isdir(args.data)):
        parser.error(f"--monitor-every {args.monitor_every} needs labelled images: --monitor-data FOLDER of class "
                     "subfolders, or --data FOLDER with class subfolders")


def monitor_callback(args, model, initial_epoch=0):
    """The `ProbeMonitor` of --monitor-every, or None (off). Raises ValueError when no labelled
    folder is there to probe with."""
    if not args.monitor_every:
        return None
    from keras_mim.evaluation.probe_monitor import ProbeMonitor

    folder = args.monitor_data or (args.data if args.data and os.path.isdir(args.data) else None)
    encoder = model.encoder
    data = folder and labelled_subset(folder, encoder.image_size, encoder.num_channels, args.seed,
                                      max_heldout=2 * MAX_HELDOUT)
    if not data:
        raise ValueError(f"--monitor-every {args.monitor_every} needs labelled images: a --monitor-data folder of "
                         f"class subfolders (or --data with class subfolders), got "
                         f"{folder or 'no folder'}{' (no class subfolders)' if folder else ''}")
    x_bank, y_bank, x_heldout, y_heldout, _ = data
    return ProbeMonitor(x_bank, y_bank, x_heldout, y_heldout, every=args.monitor_every, seed=args.seed,
                        initial_epoch=initial_epoch)
