"""The value check at the end of `keras-mim pretrain --data FOLDER`: when the folder's images
sit in class subfolders, k-NN accuracy of the pretrained encoder against the same encoder at
its random initialisation (the run's own starting point), so the user sees whether
pretraining helped on their data before spending more time on it."""

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


def labelled_subset(path, image_size, num_channels, seed):
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
        for view, cap in ((bank, MAX_BANK), (heldout, MAX_HELDOUT)):
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
