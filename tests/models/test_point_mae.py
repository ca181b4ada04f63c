"""PointMAE's own properties (the generic suite runs build / fit / round trip / bad input on
generated shapes): hidden groups never reach the encoder, the loss is the Chamfer-L2 of the
hidden groups, the classifier fine-tunes."""

import keras
import numpy as np
import pytest

from keras_mim import PointClassifier, PointEncoder, PointMAE
from keras_mim.data.sample_points import shape_clouds
from tests.conftest import to_numpy


def keras_mim_vit():
    from keras_mim import ViTEncoder

    return ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)


def np_chamfer(a, b):
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    return d.min(1).mean() + d.min(0).mean()


def test_hidden_groups_never_reach_the_encoder(rng):
    model = PointMAE.from_preset("pointmae_test", seed=0)
    points = shape_clouds(2, num_points=64, seed=1)[0]
    noise = rng.random((2, 8)).astype("float32")
    neighbourhoods, centres = (to_numpy(t) for t in model.encoder.group(points))
    masking = {k: to_numpy(v) for k, v in model.random_masking(points, noise=noise).items()}
    hidden = masking["mask"] == 1
    changed_n, changed_c = neighbourhoods.copy(), centres.copy()
    changed_n[hidden] += rng.normal(size=changed_n[hidden].shape).astype("float32")
    changed_c[hidden] += 5.0
    a = model.encoder.encode_groups(neighbourhoods, centres, ids_keep=masking["ids_keep"], training=False)
    b = model.encoder.encode_groups(changed_n, changed_c, ids_keep=masking["ids_keep"], training=False)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    out = model(points, noise=noise, training=False)
    assert to_numpy(out["pred"]).shape == (2, 4, 8, 3)
    # the target is the hidden groups' points, in the order the decoder predicts them
    order = np.argsort(masking["ids_restore"], axis=1)[:, 4:]
    np.testing.assert_allclose(to_numpy(out["target"]), np.take_along_axis(neighbourhoods, order[..., None, None], 1),
                               atol=1e-6)


def test_loss_is_the_mean_chamfer_of_the_hidden_groups(rng):
    model = PointMAE.from_preset("pointmae_test", seed=0)
    out = {k: to_numpy(v) for k, v in model(shape_clouds(2, num_points=64)[0], training=False).items()}
    expected = np.mean([np_chamfer(p, t) for p, t in zip(out["pred"].reshape(-1, 8, 3), out["target"].reshape(-1, 8, 3))])
    np.testing.assert_allclose(float(model.compute_loss(y_pred=out)), expected, rtol=1e-4)


@pytest.mark.one_backend(backend="torch")  # a training run; PointMAE's step runs on every backend in the suite
def test_classifier_fine_tunes_the_pretrained_encoder(tmp_path):
    keras.utils.set_random_seed(0)
    pretrained = PointMAE.from_preset("pointmae_test", seed=0)
    x, y, names = shape_clouds(96, num_points=64, seed=2)
    before = [to_numpy(w).copy() for w in pretrained.encoder.weights]
    model = PointClassifier(pretrained, num_classes=len(names), dropout=0.0, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0).history["loss"]
    assert history[-1] < 0.75 * history[0], history
    assert all(np.array_equal(a, to_numpy(b)) for a, b in zip(before, pretrained.encoder.weights))  # a copy trained
    model.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), atol=1e-5)


def test_bad_input_and_settings():
    with pytest.raises(ValueError, match="cannot make `num_groups`=70 groups"):
        PointEncoder(num_points=64, num_groups=70, group_size=8)
    encoder = PointEncoder(num_points=64, num_groups=8, group_size=8, embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="clouds of size 32 points but the encoder takes `num_points`=64"):
        encoder(np.zeros((1, 32, 3), "float32"))
    with pytest.raises(ValueError, match="takes x, y, z"):
        encoder(np.zeros((1, 64, 2), "float32"))
    with pytest.raises(TypeError, match="must be a PointEncoder"):
        PointClassifier(keras_mim_vit(), num_classes=2)
    with pytest.raises(ValueError, match="mask_ratio"):
        PointMAE(encoder, mask_ratio=1.0)
