"""Pretrain MAE on the digits train split, then evaluate the encoder three ways against the
same architecture from random init: k-NN, a linear probe and MAE's fine-tuning recipe.

    KERAS_BACKEND=jax python examples/pretrain_then_evaluate.py

About 10 minutes on a 2-core CPU (KERAS_MIM_EXAMPLE_EPOCHS=1 runs it in under a minute).
The full study with more epochs and low-shot rows is benchmarks/downstream_study.py.
"""

import os

import keras

import keras_mim
from keras_mim.data import finetune_dataset, load_labelled_digits
from keras_mim.evaluation import fit_linear_probe, knn_evaluate
from keras_mim.optimizers import finetune_optimizer

epochs = int(os.environ.get("KERAS_MIM_EXAMPLE_EPOCHS", 20))
x_train, y_train = load_labelled_digits("train")  # (1438, 16, 16, 1), labels 0..9
x_test, y_test = load_labelled_digits("test")  # (359, 16, 16, 1): never seen in pretraining

# 1. MAE pretraining on the training images (labels unused).
keras.utils.set_random_seed(0)
mae = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, norm_pix_loss=True, seed=0)
random_encoder = keras_mim.models.encoder_model.copy_model(mae.encoder)  # the same init, never trained
mae.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.05, beta_2=0.95))
mae.fit(x_train, batch_size=32, epochs=3 * epochs, verbose=2)

sparse_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
for name, encoder in (("MAE", mae.encoder), ("random init", random_encoder)):
    # 2. k-NN on frozen features (cosine, k = 20, T = 0.07).
    knn = knn_evaluate(encoder, x_train, y_train, x_test, y_test, verbose=0)["top1"]

    # 3. Linear probe: frozen encoder, BatchNorm without affine + Dense, MAE's recipe
    #    (SGD, warmup + cosine) on features computed once, BatchNorm statistics set from them.
    probe = keras_mim.LinearProbe(encoder, num_classes=10)
    fit_linear_probe(probe, x_train, y_train, epochs=epochs, verbose=0)
    probe_acc = probe.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]

    # 4. Fine-tuning: layer-wise lr decay, RandAugment, mixup/cutmix, label smoothing.
    model = keras_mim.ImageClassifier(encoder, num_classes=10, drop_path_rate=0.1, seed=0)
    train = finetune_dataset(x_train, y_train, num_classes=10, batch_size=64, seed=0)
    steps = len(x_train) // 64 * epochs
    model.compile(optimizer=finetune_optimizer(model, total_steps=steps, batch_size=64, layer_decay=0.75),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(train, epochs=epochs, verbose=0)
    model.compile(loss=sparse_ce, metrics=["accuracy"])
    finetune_acc = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    print(f"{name:12s} k-NN {knn:.3f}  linear probe {probe_acc:.3f}  fine-tune {finetune_acc:.3f}")
