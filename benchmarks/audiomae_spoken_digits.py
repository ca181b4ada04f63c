"""Audio-MAE on real speech: pretrain on spoken digits synthesised by espeak-ng, then k-NN and
a ridge linear probe on the frozen encoder's features, against the same encoder at random
init. Train and test words come from separate draws of voices, speeds and pitches.

Writes a JSON with the command, the losses and the accuracies. Nothing is downloaded.
Usage: KERAS_BACKEND=torch python benchmarks/audiomae_spoken_digits.py --epochs 60 --json benchmarks/results/audiomae_spoken_digits_torch.json
"""

import argparse
import json
import sys
import time

import keras

from frozen_scores import frozen_accuracies
from keras_mim import AudioMAE
from keras_mim.data.sample_audio import spoken_digits
from keras_mim.evaluation.knn import extract_features


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--num-train", type=int, default=1280, help="pretraining clips (also the probes' train set)")
    p.add_argument("--num-test", type=int, default=400)
    p.add_argument("--preset", default="audiomae_vit_tiny_patch8")
    p.add_argument("--mask-generator", default="random", choices=("random", "time_frequency"))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    keras.utils.set_random_seed(0)
    start = time.time()
    train_waves, y_train, _ = spoken_digits(args.num_train, seed=1)
    test_waves, y_test, _ = spoken_digits(args.num_test, seed=2)
    synth_s = time.time() - start

    def build(mean=None, std=None):
        stats = {} if mean is None else {"spectrogram_mean": mean, "spectrogram_std": std}
        return AudioMAE.from_preset(args.preset, norm_pix_loss=True, mask_generator=args.mask_generator, seed=0,
                                    **stats)

    raw = build(0.0, 0.5)  # (x - 0) / (2 * 0.5): the log-mel values themselves, for the statistics
    samples = raw.frontend().num_samples()
    logmel = raw.spectrograms(train_waves[:, :samples], 16000)
    mean, std = float(logmel.mean()), float(logmel.std())
    model = build(mean, std)
    x_train = model.spectrograms(train_waves[:, :samples], 16000)
    x_test = model.spectrograms(test_waves[:, :samples], 16000)
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.05, beta_2=0.95))
    start = time.time()
    history = model.fit(x_train, batch_size=64, epochs=args.epochs, verbose=2)
    result = {"command": " ".join(["python"] + sys.argv), "backend": keras.backend.backend(),
              "preset": args.preset, "mask_generator": args.mask_generator, "num_train": args.num_train,
              "num_test": args.num_test, "epochs": args.epochs, "spectrogram_mean_std": [mean, std],
              "loss_first_last": [history.history["loss"][0], history.history["loss"][-1]],
              "synthesis_time_s": round(synth_s, 1), "train_time_s": round(time.time() - start, 1)}
    for name, m in (("pretrained", model), ("random_init", build(mean, std))):
        train_f, test_f = (extract_features(m.encoder, x, verbose=0) for x in (x_train, x_test))
        result[name] = frozen_accuracies(train_f, y_train, test_f, y_test, num_classes=10)
        print(name, result[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
