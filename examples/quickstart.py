"""MAE quick start: pretrain a small ViT on scikit-learn's digits with `model.fit`.

Runs on any backend (set KERAS_BACKEND=tensorflow|jax|torch before starting) in about
a minute on a laptop CPU, and writes `quickstart_reconstructions.png`:

    KERAS_BACKEND=jax python examples/quickstart.py
"""

import os
import sys

import keras

import keras_mim
from keras_mim.data import load_sample_images

epochs = int(os.environ.get("KERAS_MIM_EXAMPLE_EPOCHS", 10))

images = load_sample_images("digits", image_size=16)  # (1797, 16, 16, 1) float32 in [0, 1]
train, held_out = images[:-64], images[-64:]

keras.utils.set_random_seed(0)
model = keras_mim.MaskedAutoencoder.from_preset(
    "mae_vit_nano_patch2_16", num_channels=1, mask_ratio=0.75, norm_pix_loss=False, seed=0
)  # raw-pixel targets: the figure then shows only what the model predicts
model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.05, beta_1=0.9, beta_2=0.95))
model.fit(train, batch_size=64, epochs=epochs, validation_data=(held_out,))

output = sys.argv[1] if len(sys.argv) > 1 else "quickstart_reconstructions.png"
keras_mim.viz.plot_reconstructions(model, held_out[:4], path=output, title="MAE on digits")
print(f"wrote {output}")
# The encoder alone is what a classifier later fine-tunes or probes:
features = model.encoder(held_out[:8])  # (8, 1 + 64, 64): cls + patch tokens
print("encoder features", tuple(features.shape))
