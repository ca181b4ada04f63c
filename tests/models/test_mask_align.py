import keras
import numpy as np
import pytest

from keras_mim import ViTEncoder
from keras_mim.masking import GuidedMaskGenerator
from keras_mim.models.mask_align import MaskAlign, dynamic_alignment_init
from keras_mim.models.presets import preset_model_class
from keras_mim.targets.teacher_features import TeacherFeatures
from tests.conftest import to_numpy
from tests.training import assert_roundtrip


def small_vit(channels=3, **kw):
    # One teacher shape for every test (JAX compiles each eager op once per shape): depth 3
    # and width 24 differ from the test student's (2, 32), so the mixing matrix is (3, 2).
    return ViTEncoder(**{"image_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 3, "num_heads": 2,
                         "num_channels": channels, "name": "teacher_vit", **kw})


def patch_teacher():
    """A functional teacher without attention or [CLS]: per-patch features only."""
    inputs = keras.Input((16, 16, 3))
    grid = keras.layers.Conv2D(8, 4, strides=4, name="patchify")(inputs)  # (B, 4, 4, 8)
    return keras.Model(inputs, keras.layers.Dense(12, name="mlp")(grid), name="patch_teacher")


def layer_norm(y, eps=1e-5):
    return (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + eps)


def smooth_l1(e, beta=1.0):
    a = np.abs(e)
    return np.where(a < beta, 0.5 * e**2 / beta, a - 0.5 * beta)


def official_loss(student_hidden, teacher_hidden, ids_keep, mixing, heads, with_cls):
    """MaskAlign `get_student` / `get_teacher` / `forward_loss` (linear fusion, linear heads,
    whiten target norm, smoothl1, mean over the aligned layers) in numpy.

    student_hidden: S x (B, 1 + K, D) block outputs; teacher_hidden: T x (B, 1 + N, Dt)."""
    stack = np.stack(student_hidden)  # (S, B, 1 + K, D)
    if not with_cls:
        stack = stack[:, :, 1:]
    mixed = np.einsum("ab,bcde->acde", mixing, stack)
    loss = 0.0
    for t, (y, (w, b)) in enumerate(zip(teacher_hidden, heads)):
        x = mixed[t] @ w + b
        y = layer_norm(y)
        patches = np.stack([y[i, 1:][ids_keep[i]] for i in range(len(ids_keep))])
        target = np.concatenate([y[:, :1], patches], 1) if with_cls else patches
        loss += 1.0 / len(heads) * 2 * smooth_l1(target - x).mean()
    return loss


def test_alignment_matrix_init_is_official_top_rows():
    assert preset_model_class("maskalign_vit_base_patch16") is MaskAlign
    official = np.eye(12) + 0.01  # `torch.eye(len(self.blocks)) + 0.01`; top5 uses rows 7..11
    np.testing.assert_allclose(dynamic_alignment_init(5, 12), official[7:], atol=1e-7)
    np.testing.assert_allclose(dynamic_alignment_init(12, 12), official, atol=1e-7)


@pytest.mark.parametrize("align_cls", [True, False])
def test_loss_matches_official_numpy(rng, align_cls):
    teacher = small_vit()
    model = MaskAlign.from_preset("maskalign_vit_test", teacher=teacher, align_cls=align_cls)
    assert model.teacher.feature_layers == [0, 1, 2] and model.student_layers == [0, 1]
    model.mixing.assign(rng.normal(size=(3, 2)).astype("float32"))
    for head in model.heads:
        head.bias.assign(rng.normal(size=(24,)).astype("float32"))
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    ids_keep = np.argsort(noise, axis=1)[:, :4]  # K = int(16 * 0.3)
    np.testing.assert_array_equal(to_numpy(out["ids_keep"]), ids_keep)
    _, student = model.encoder.forward_features(x, [0, 1], ids_keep=ids_keep)
    _, teach = teacher.forward_features(x, [0, 1, 2])
    heads = [(to_numpy(h.kernel).astype(np.float64), to_numpy(h.bias)) for h in model.heads]
    f64 = [[to_numpy(h).astype(np.float64) for h in hidden] for hidden in (student, teach)]
    ref = official_loss(*f64, ids_keep, to_numpy(model.mixing).astype(np.float64), heads, with_cls=align_cls)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(ref, rel=1e-4)


def test_no_decoder_and_student_sees_only_visible_patches(rng):
    model = MaskAlign.from_preset("maskalign_vit_test", teacher=small_vit())
    assert not hasattr(model, "decoder")
    assert not any("decoder" in v.path for v in model.weights)
    def size(weights):
        return sum(int(np.prod(v.shape)) for v in weights)

    heads = sum(h.count_params() for h in model.heads)  # + the (T, S) alignment matrix:
    assert size(model.trainable_weights) == size(model.encoder.trainable_weights) + heads + 3 * 2
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    y = x.copy()
    for b, t in zip(*np.nonzero(to_numpy(out["mask"]))):  # scramble every hidden patch
        r, c = divmod(int(t), 4)
        y[b, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = rng.random((4, 4, 3))
    for a, b in zip(out["pred"], model(y, noise=noise)["pred"]):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-5)


def test_masks_follow_teacher_attention(rng):
    teacher = small_vit()
    gen = MaskAlign.from_preset("maskalign_vit_test", teacher=teacher).mask_generator
    assert isinstance(gen, GuidedMaskGenerator) and gen.sample == "visible" and gen.mask_ratio == 0.7
    gen, twin = (GuidedMaskGenerator(0.7, seed=3, sample="visible") for _ in range(2))
    model = MaskAlign.from_preset("maskalign_vit_test", teacher=teacher, mask_generator=gen)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    # the same draw as a twin generator fed the teacher's [CLS] attention as importance
    expected = twin(x, grid_shape=(4, 4), importance=teacher.cls_attention(x))
    np.testing.assert_array_equal(to_numpy(model(x)["ids_keep"]), to_numpy(expected["ids_keep"]))


def test_teacher_without_attention_gets_random_masks(rng):
    model = MaskAlign.from_preset("maskalign_vit_test", teacher=patch_teacher(), seed=0)
    assert model.teacher_dims == [12] and not model.aligns_cls  # no [CLS] to align
    x = rng.random((2, 16, 16, 3)).astype("float32")
    a, b = model(x), model(x)
    assert [tuple(p.shape) for p in a["pred"]] == [(2, 4, 12)]
    assert to_numpy(a["mask"]).sum(1).tolist() == [12, 12]
    assert not np.array_equal(to_numpy(a["mask"]), to_numpy(b["mask"]))
    assert np.isfinite(float(model.compute_loss(x=x, y_pred=a)))


@pytest.mark.parametrize("make_teacher", [small_vit, patch_teacher])
def test_keras_roundtrip_with_teacher_inside(make_teacher, tmp_path, rng):
    model = MaskAlign.from_preset("maskalign_vit_test", teacher=make_teacher(), seed=0)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    loaded = assert_roundtrip(model, x, tmp_path, call_kwargs={"noise": noise}, keys=["mask", "ids_keep"])
    for a, b in zip(model(x, noise=noise)["pred"], loaded(x, noise=noise)["pred"]):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)
    for a, b in zip(model.teacher.weights, loaded.teacher.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert loaded.trainable_weights and len(loaded.trainable_weights) == len(model.trainable_weights)


@pytest.mark.parametrize(
    "kw,error,match",
    [
        (dict(teacher=None), TypeError, "A `teacher` is required"),
        (dict(teacher="clip"), TypeError, "must be a Keras model.*got str"),
        (dict(teacher=small_vit(patch_size=2)), ValueError, r"gives 64 patch tokens.*student has 16 patches"),
        (dict(teacher=small_vit(channels=1)), ValueError, r"cannot take images of shape \(16, 16, 3\)"),
        (dict(teacher=small_vit(), teacher_layers=[7]), ValueError, r"Bad teacher `layers`=\[7\]"),
        (dict(teacher=patch_teacher(), teacher_layers=["nope"]), ValueError, r"Unknown teacher layer 'nope'"),
        (dict(teacher=TeacherFeatures(small_vit(), feature_dims=64)), ValueError, r"`feature_dims`=\[64\]"),
        (dict(teacher=small_vit(), student_layers=[2]), ValueError, r"Bad `student_layers`=\[2\]"),
        (dict(teacher=small_vit(), beta=0.0), ValueError, r"`beta` \(smooth-L1\) must be a float > 0"),
        (dict(teacher=small_vit(), mask_ratio=0.97), ValueError, "leaves no visible token"),
    ],
)
def test_bad_arguments_fail_at_construction(kw, error, match):
    with pytest.raises(error, match=match):
        MaskAlign.from_preset("maskalign_vit_test", **kw)


def test_teacher_cannot_be_the_student():
    encoder = ViTEncoder(16, 4, embed_dim=32, depth=2, num_heads=2)
    with pytest.raises(ValueError, match="different model from the student"):
        MaskAlign(encoder, teacher=encoder)
