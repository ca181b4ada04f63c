import keras
import numpy as np
import pytest

from keras_mim import ViTEncoder
from keras_mim.masking import GuidedMaskGenerator, RandomMaskGenerator
from keras_mim.targets.teacher_features import TeacherFeatures, get_teacher, teacher_guided_masking
from tests.conftest import to_numpy


def small_vit(**kw):
    return ViTEncoder(**{"image_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2, **kw})


def patch_teacher(image_size=16, with_cls=True):
    """A functional teacher, as a keras-hub backbone would be: patchify conv (a spatial
    `(B, 4, 4, 8)` map), a per-token Dense, and tokens with a pooled [CLS] in front."""
    inputs = keras.Input((image_size, image_size, 3))
    grid = keras.layers.Conv2D(8, 4, strides=4, name="patchify")(inputs)  # (B, 4, 4, 8)
    tokens = keras.layers.Reshape((-1, 8), name="tokens")(grid)
    tokens = keras.layers.Dense(12, name="mlp")(tokens)  # (B, 16, 12)
    outputs = tokens
    if with_cls:
        cls = keras.layers.Reshape((1, 12), name="cls")(keras.layers.GlobalAveragePooling1D(name="pool")(tokens))
        outputs = keras.layers.Concatenate(axis=1, name="with_cls")([cls, tokens])  # (B, 17, 12)
    return keras.Model(inputs, outputs, name="patch_teacher")


def layer_norm(y, eps=1e-5):
    y = y.astype(np.float64)
    return (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + eps)


def official_patchify(x, p):
    n, h, w, c = x.shape
    x = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def test_vit_teacher_features_are_normalised_block_outputs(rng):
    vit = small_vit()
    teacher = TeacherFeatures(vit, layers=[0, -1])
    assert teacher.num_prefix_tokens == 1 and teacher.feature_layers == [0, 1]
    x = rng.random((2, 16, 16, 3)).astype("float32")
    _, raw = vit.forward_features(x, [0, 1])
    ids = np.array([[3, 0, 7], [15, 2, 9]], "int32")
    full = teacher.features(x)
    kept = teacher.features(x, ids_keep=ids, with_cls=True)
    for f, k, r in zip(full, kept, raw):
        ref = layer_norm(to_numpy(r))  # (B, 1 + N, D)
        np.testing.assert_allclose(to_numpy(f), ref[:, 1:], atol=1e-4)
        gathered = np.stack([ref[b, 1:][ids[b]] for b in range(2)])
        np.testing.assert_allclose(to_numpy(k), np.concatenate([ref[:, :1], gathered], 1), atol=1e-4)
        assert to_numpy(f).dtype == np.float32


def test_functional_teacher_flattens_maps_and_drops_prefix(rng):
    model = patch_teacher()
    teacher = TeacherFeatures(model, layers=["patchify", "with_cls"], num_prefix_tokens=1, normalize=None)
    assert teacher.check_compatible((16, 16, 3), num_patches=16) == [8, 12]
    assert not teacher.has_cls  # the spatial map has no [CLS]
    x = rng.random((2, 16, 16, 3)).astype("float32")
    grid, tokens = teacher.features(x)
    kernel, bias = (to_numpy(w) for w in model.get_layer("patchify").weights)
    # A conv with kernel = stride = 4 is a Dense on each flattened patch, row-major order.
    ref = official_patchify(x.astype(np.float64), 4) @ kernel.reshape(48, 8) + bias
    np.testing.assert_allclose(to_numpy(grid), ref, atol=1e-4)
    dense = model.get_layer("mlp")
    np.testing.assert_allclose(to_numpy(tokens), to_numpy(dense(ref.astype("float32"))), atol=1e-4)


def test_model_outputs_by_default_and_cls_detection():
    teacher = TeacherFeatures(patch_teacher(), num_prefix_tokens=1)
    assert teacher.feature_layers is None
    assert teacher.check_compatible((16, 16, 3), 16) == [12] and teacher.has_cls
    out = teacher.features(np.zeros((2, 16, 16, 3), "float32"), ids_keep=np.zeros((2, 4), "int32"), with_cls=True)
    assert [tuple(o.shape) for o in out] == [(2, 5, 12)]


def test_teacher_is_frozen():
    vit = small_vit()
    teacher = TeacherFeatures(vit)
    assert not vit.trainable and not teacher.trainable
    assert teacher.trainable_weights == [] and len(teacher.non_trainable_weights) == len(vit.weights)
    teacher.trainable = True  # e.g. `pretraining_model.trainable = True`
    assert not teacher.trainable and teacher.trainable_weights == []
    holder = keras.Sequential([keras.Input((16, 16, 3)), teacher])
    holder.trainable = True
    assert holder.trainable_weights == []


def test_frozen_after_deserialization():
    # On TensorFlow, `model.trainable = False` is a no-op for a model whose flag is
    # already False, which left deserialized teachers with trainable variables.
    teacher = TeacherFeatures(small_vit())
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(teacher))
    assert all(not v.trainable for v in again.weights) and again.feature_layers == [1]


def test_keras_file_carries_the_teacher_weights(tmp_path, rng):
    teacher = TeacherFeatures(patch_teacher(), layers=["mlp"], loss="cosine")  # one layer: a Target
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, teacher(inputs))
    x = rng.random((2, 16, 16, 3)).astype("float32")
    model.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    np.testing.assert_allclose(to_numpy(model(x)), to_numpy(loaded(x)), atol=1e-6)
    assert loaded.layers[-1].get_config()["layers"] == ["mlp"] and loaded.layers[-1].loss == "cosine"


def test_attention_of_vit_teachers_only(rng):
    vit = small_vit()
    x = rng.random((2, 16, 16, 3)).astype("float32")
    teacher = TeacherFeatures(vit)
    assert teacher.has_attention
    np.testing.assert_allclose(to_numpy(teacher.attention(x)), to_numpy(vit.cls_attention(x)), atol=1e-6)
    plain = TeacherFeatures(patch_teacher())
    assert not plain.has_attention
    with pytest.raises(ValueError, match="no \\[CLS\\] attention"):
        plain.attention(x)


def test_guided_masking_keeps_what_the_teacher_attends_to(rng):
    vit = small_vit()
    teacher = TeacherFeatures(vit)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    gen, twin = (GuidedMaskGenerator(0.75, seed=0, sample="visible") for _ in range(2))
    out = teacher_guided_masking(gen, teacher, x, (4, 4))
    expected = twin(x, grid_shape=(4, 4), importance=vit.cls_attention(x))
    np.testing.assert_array_equal(to_numpy(out["ids_keep"]), to_numpy(expected["ids_keep"]))
    # no attention: uniformly random masks; `noise` always fixes the mask
    out = teacher_guided_masking(gen, TeacherFeatures(patch_teacher()), x, (4, 4))
    assert to_numpy(out["mask"]).sum(1).tolist() == [12, 12]
    noise = rng.random((2, 16)).astype("float32")
    fixed = teacher_guided_masking(RandomMaskGenerator(0.75), teacher, x, (4, 4), noise=noise)
    np.testing.assert_array_equal(np.sort(to_numpy(fixed["ids_keep"]), 1), np.sort(np.argsort(noise)[:, :4], 1))


@pytest.mark.parametrize(
    "make,kw,shape,n,error,match",
    [
        (lambda: small_vit(patch_size=2), {}, (16, 16, 3), 16, ValueError, r"block 1 gives 64 patch.*16 patches"),
        (small_vit, {}, (16, 16, 3), 16, None, None),
        (small_vit, {"feature_dims": 48}, (16, 16, 3), 16, ValueError, r"`feature_dims`=\[48\].*\[32\]"),
        (small_vit, {}, (16, 16, 1), 16, ValueError, r"cannot take images.*`num_channels`=3"),
        (lambda: patch_teacher(32), {}, (16, 16, 3), 16, ValueError, r"takes inputs of shape \(32, 32, 3\)"),
        (patch_teacher, {"layers": ["patchify"]}, (16, 16, 3), 4, ValueError, r"layer 'patchify' gives 16.*4 patches"),
    ],
)
def test_check_compatible(make, kw, shape, n, error, match):
    teacher = TeacherFeatures(make(), **kw)
    if error is None:
        assert teacher.check_compatible(shape, n) == [32]
        return
    with pytest.raises(error, match=match):
        teacher.check_compatible(shape, n)


def test_outputs_that_are_not_tokens_are_refused():
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 4, strides=4)(inputs))
    with pytest.raises(ValueError, match=r"gives shape \(1, 8\); expected tokens"):
        TeacherFeatures(keras.Model(inputs, pooled)).check_compatible((16, 16, 3), 16)


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(8, 4, strides=4)

    def call(self, x):
        return self.conv(x)


def test_subclassed_teacher_gives_its_outputs():
    model = Subclassed()
    model(np.zeros((1, 16, 16, 3), "float32"))
    teacher = TeacherFeatures(model)
    assert teacher.check_compatible((16, 16, 3), 16) == [8]
    with pytest.raises(TypeError, match="needs a ViTEncoder or a functional"):
        TeacherFeatures(model, layers=["conv"])


@pytest.mark.parametrize(
    "args,error,match",
    [
        (("not a model",), TypeError, "must be a Keras model.*got str"),
        ((keras.layers.Dense(3),), TypeError, "must be a Keras model.*got Dense"),
        ((None, [5]), ValueError, r"Bad teacher `layers`=\[5\].*depth 2"),
        ((None, ["block_0"]), ValueError, r"Bad teacher `layers`"),
        (("functional", ["nope"]), ValueError, r"Unknown teacher layer 'nope'.*'patchify'"),
        (("functional", [1]), TypeError, "`layers` are layer names, got 1"),
        ((None, None, 0), ValueError, r"`num_prefix_tokens`=0 but the ViTEncoder teacher has 1"),
        ((None, None, None, "l2"), ValueError, r"`normalize` must be one of"),
    ],
)
def test_bad_arguments(args, error, match):
    model = {None: small_vit(), "functional": patch_teacher()}.get(args[0], args[0])
    with pytest.raises(error, match=match):
        TeacherFeatures(model, *args[1:])


def test_get_teacher():
    vit = small_vit()
    teacher = get_teacher(vit, default_vit_layers=[0, 1])
    assert isinstance(teacher, TeacherFeatures) and teacher.feature_layers == [0, 1]
    assert get_teacher(teacher) is teacher
    with pytest.raises(TypeError, match="A `teacher` is required"):
        get_teacher(None)
    with pytest.raises(ValueError, match="`teacher_layers`=\\[0\\] applies when `teacher` is a model"):
        get_teacher(teacher, layers=[0])
    with pytest.raises(ValueError, match="different model from the student"):
        get_teacher(vit, student=vit)
