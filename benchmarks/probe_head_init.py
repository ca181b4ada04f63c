"""How long must a linear probe train? Test accuracy after 3, 10 and 90 epochs of MAE's probe
recipe (`keras_mim.evaluation.fit_linear_probe`), with the head started at the ridge
classifier of the features (the default) or at MAE's random weights, on the digits split:
all 1438 training labels and 10 per class, for a saved model's encoder pretrained and at its
random initialisation (the `--random-init` of `keras-mim probe`: same architecture, same seed).

    KERAS_BACKEND=jax python benchmarks/probe_head_init.py runs/study/pretrain/model.keras \
        --json benchmarks/results/probe_head_init_jax.json

About 3 minutes on a 2-core CPU for the nano ViT.
"""

import argparse
import json
import os
import platform
import time

import numpy as np

EPOCHS = (3, 10, 90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved keras_mim .keras model (e.g. keras-mim pretrain's model.keras)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--epochs", type=int, nargs="+", default=list(EPOCHS))
    args = parser.parse_args()

    import keras

    from keras_mim.data import load_labelled_digits
    from keras_mim.evaluation import fit_linear_probe, load_encoder, random_init_encoder
    from keras_mim.models.linear_probe import LinearProbe

    pretrained = load_encoder(args.model)
    random_init = random_init_encoder(pretrained, seed=0)  # the CLI's --random-init
    x_train, y_train = load_labelled_digits("train", image_size=pretrained.image_size)
    x_test, y_test = load_labelled_digits("test", image_size=pretrained.image_size)
    few = np.concatenate([np.flatnonzero(y_train == c)[:10] for c in range(10)])
    labels = {"all_labels": (x_train, y_train), "10_per_class": (x_train[few], y_train[few])}

    results, start = {}, time.perf_counter()
    for encoder_name, encoder in (("pretrained", pretrained), ("random_init", random_init)):
        for label_name, (x, y) in labels.items():
            for head_init in ("ridge", "random"):
                row = results.setdefault(f"{encoder_name}/{label_name}/{head_init}", {})
                for epochs in args.epochs:
                    keras.utils.set_random_seed(0)
                    probe = LinearProbe(encoder, num_classes=10, seed=0)
                    history = fit_linear_probe(probe, x, y, epochs=epochs, head_init=head_init, verbose=0)
                    logits = np.asarray(probe.predict(x_test, batch_size=256, verbose=0))
                    row[str(epochs)] = round(float(np.mean(logits.argmax(-1) == y_test)), 4)
                    if history.get("ridge"):
                        row["ridge"] = history["ridge"]
                print(f"{encoder_name:12s} {label_name:13s} head {head_init:6s} "
                      + "  ".join(f"{e} ep {row[str(e)]:.3f}" for e in args.epochs), flush=True)
    record = {
        "what": "digits (scikit-learn), fixed split 1438 train / 359 test; linear probe test top-1 "
                "after N epochs (fit_linear_probe defaults otherwise: batch 128, base lr 0.1)",
        "model": os.path.abspath(args.model), "results": results,
        "command": f"KERAS_BACKEND={keras.backend.backend()} python benchmarks/probe_head_init.py {args.model}",
        "wall_time_s": round(time.perf_counter() - start, 1), "backend": keras.backend.backend(),
        "keras": keras.__version__, "python": platform.python_version(), "machine": platform.machine(),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
