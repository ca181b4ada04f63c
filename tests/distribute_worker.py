"""Multi-device checks of keras_mim.distribute, run by tests/test_distribute.py in a
child process (the device count must be fixed before the backend starts).

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/distribute_worker.py data 4
    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/distribute_worker.py model 4
    KERAS_BACKEND=tensorflow python tests/distribute_worker.py data 2
    KERAS_BACKEND=jax|tensorflow python tests/distribute_worker.py cli 2 RUN_FOLDER
    KERAS_BACKEND=jax|tensorflow python tests/distribute_worker.py ibot 2   (XLA_FLAGS as above on JAX)

`data` (on JAX with iBOT's centering) / `model` / `ibot` (TensorFlow) print one JSON line (prefixed RESULT) that the test asserts on; `cli`
runs `keras-mim pretrain --distribute data` in this process and prints exit statuses.
"""

import json
import math
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BACKEND = os.environ["KERAS_BACKEND"]
NUM_DEVICES = int(sys.argv[2]) if len(sys.argv) > 2 else 2

if BACKEND == "tensorflow":  # simulated CPU devices, before TensorFlow starts
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_mim  # noqa: E402
from keras_mim.distribute import distinct_replica_seeds, distribution_scope, list_devices  # noqa: E402

STEPS = 2
BATCH = 8  # global batch


class FixedMaskGenerator(keras_mim.MaskGenerator):
    """The same hidden tokens in every sample and every step: a one-device run and a
    multi-replica run then see the same masks whatever their random streams."""

    def scores(self, batch_size, grid_shape):
        n = math.prod(grid_shape)
        order = ops.cast((ops.arange(n) * 7) % n, "float32")  # a fixed permutation of 0..n-1
        return ops.zeros((batch_size, 1)) + order[None, :]


def images(seed=0):
    return np.random.default_rng(seed).random((BATCH, 16, 16, 3)).astype("float32")


def train(kind, mask_generator=None, **scope):
    """Loss history and final weights of STEPS steps on one fixed global batch."""
    keras.utils.set_random_seed(0)  # same initial weights in every run
    extra = {} if mask_generator is None else {"mask_generator": mask_generator}
    with distribution_scope(kind, **scope) as dist:
        model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0, **extra)
        # SGD: a weight difference is lr x a gradient difference (Adam would divide
        # near-zero gradients by their own size and magnify rounding noise).
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        history = model.fit(images(), batch_size=BATCH, epochs=STEPS, shuffle=False, verbose=0)
    weights = [np.asarray(ops.convert_to_numpy(w)) for w in model.get_weights()]
    return model, dist, history.history["loss"], weights


def max_diff(a, b):
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b)))


def jax_data_checks(single_run=None):
    """`single_run`: the one-device `train("none")` to compare with (made here if None)."""
    out = {"devices": list_devices()}
    single, _, loss_1, w_1 = single_run or train("none")
    data, dist, loss_d, w_d = train("data")
    out.update(loss_single=loss_1, loss_data=loss_d, weight_diff_data=max_diff(w_1, w_d))
    # Masks: same seed, identical images. The step is one SPMD program over the global
    # batch: the masks are one draw for the whole batch (the same as on one device) and
    # each device gets its rows of it, which differ from the other devices' rows.
    same = np.ones((BATCH, 16, 16, 3), "float32")
    with dist.scope():
        batch = keras.distribution.distribute_tensor(same, dist.get_data_layout(same.shape))
        mask = np.asarray(data(batch, training=True)["mask"])
    per_device = np.split(mask, len(out["devices"]))  # the rows each device trains on
    out["per_device_masks_equal"] = bool(np.array_equal(per_device[0], per_device[1]))
    out["mask_rows_distinct"] = len({m.tobytes() for m in mask})
    out["masks_equal_single"] = bool(np.array_equal(mask, np.asarray(single(same, training=True)["mask"])))
    return out


def jax_model_checks(single_run=None):
    """Model parallel: a (devices / 2) x 2 mesh, block kernels split over "model"; `single_run`
    as in `jax_data_checks`."""
    out = {"devices": list_devices()}
    _, _, loss_1, w_1 = single_run or train("none")
    model, _, loss_m, w_m = train("model", model_parallel_size=2)
    out.update(loss_single=loss_1, loss_model=loss_m, weight_diff_model=max_diff(w_1, w_m))
    out["shardings"] = {v.path: str(v.value.sharding.spec) for v in model.trainable_variables}
    out["optimizer_sharded"] = sum("model" in str(v.value.sharding.spec) for v in model.optimizer.variables)
    out["mesh"] = dict(model.trainable_variables[0].value.sharding.mesh.shape)
    return out


def tf_replica_masks(model, strategy, x):
    """The masks each replica draws for its slice of `x` (a model call per replica)."""
    import tensorflow as tf

    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(len(x)))
    batch = next(iter(dataset))
    masks = tf.function(lambda b: strategy.run(lambda t: model(t, training=True)["mask"], args=(b,)))(batch)
    return [r.numpy() for r in strategy.experimental_local_results(masks)]


def tf_data_checks():
    out = {"devices": list_devices()}
    _, _, loss_1, w_1 = train("none", FixedMaskGenerator(0.75))
    _, _, loss_d, w_d = train("data", FixedMaskGenerator(0.75))
    out.update(loss_single=loss_1, loss_data=loss_d, weight_diff_data=max_diff(w_1, w_d))
    # Random masks: identical images on both replicas must still get different masks.
    model, strategy, _, _ = train("data")
    out["replicas"] = strategy.num_replicas_in_sync
    per_replica = tf_replica_masks(model, strategy, np.ones((BATCH, 16, 16, 3), "float32"))
    out["per_device_masks_equal"] = bool(np.array_equal(per_replica[0], per_replica[1]))
    out["mask_rows_distinct"] = len({m.tobytes() for m in np.concatenate(per_replica)})
    state = model.mask_generator.seed_generator.state.value
    out["seed_states"] = [v.numpy().tolist() for v in state.values]
    # Seed states are not in saved weights: loading keeps the replicas apart, and
    # splitting again changes nothing.
    path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    model.save_weights(path)
    with strategy.scope():
        model.load_weights(path)
    out["seed_states_loaded"] = [v.numpy().tolist() for v in state.values]
    out["seeds_split_again"] = distinct_replica_seeds(model)
    out["seed_states_split"] = [v.numpy().tolist() for v in state.values]
    return out


def ibot_centering_checks():
    """iBOT's centers after one step on several devices vs one: the batch mean must be over
    the global batch. The teacher's scores (hence the centers) do not depend on the masks,
    which differ across TensorFlow replicas, and the first step leaves the teacher as the
    student's copy, so the expected center is 0.1 x the teacher's mean score over the batch."""
    rng = np.random.default_rng(0)
    views = {"reference": rng.random((BATCH, 16, 16, 3)).astype("float32"),
             "target": rng.random((BATCH, 16, 16, 3)).astype("float32")}
    views["reference"][: BATCH // 2] *= 0.2  # the halves (one per device) differ in their scores
    out = {"devices": list_devices()}
    for kind in ("none", "data"):
        keras.utils.set_random_seed(0)  # same initial weights in every run
        with distribution_scope(kind):
            model = keras_mim.IBOT.from_preset("ibot_vit_test", seed=0)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model.fit(views, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        out[f"center_{kind}"] = np.asarray(ops.convert_to_numpy(model.center)).tolist()
        out[f"center2_{kind}"] = np.asarray(ops.convert_to_numpy(model.center2)).tolist()
        out[f"updates_{kind}"] = int(ops.convert_to_numpy(model.teacher.num_updates))
        copies = getattr(getattr(model.center, "value", None), "values", None)  # tf.distribute replicas
        if copies is not None:
            out[f"center_replicas_{kind}"] = [np.asarray(c.numpy()).tolist() for c in copies]
    images = np.concatenate([views["reference"], views["target"]])
    scores = np.asarray(ops.convert_to_numpy(model.teacher_head(model.teacher.encoder(images, training=False))))
    scores = scores.reshape((2, BATCH) + scores.shape[1:])  # (views, B, 1 + N, K)
    out["center_expected"] = (0.1 * scores[:, :, 0].mean((0, 1))).tolist()
    out["center2_expected"] = (0.1 * scores[:, :, 1:].mean((0, 1, 2))).tolist()
    half = scores[:, : BATCH // 2]  # what device 0 alone would average
    out["center_first_half"] = (0.1 * half[:, :, 0].mean((0, 1))).tolist()
    return out


def cli(output):
    """`keras-mim pretrain --distribute data` (after a batch it must refuse), then the
    same run on one device (`--distribute none`) into `output`-single."""
    from keras_mim import cli as keras_mim_cli

    argv = ["pretrain", "--epochs", "1", "--num-images", "32", "--batch-size", "16", "--preset", "mae_vit_test",
            "--output", output]
    try:  # a global batch that does not split over the devices: exit 2 before training
        keras_mim_cli.main([*argv[:5], "--batch-size", str(2 * NUM_DEVICES + 1), *argv[7:], "--distribute", "data"])
        print("RESULT bad-batch exit 0")
    except SystemExit as error:
        print(f"RESULT bad-batch exit {error.code}")
    print(f"RESULT exit {keras_mim_cli.main([*argv, '--distribute', 'data'])}")
    argv[-1] = output + "-single"
    print(f"RESULT single exit {keras_mim_cli.main(argv)}")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "cli":
        cli(sys.argv[3])
    else:
        checks = {("jax", "data"): jax_data_checks, ("jax", "model"): jax_model_checks,
                  ("tensorflow", "data"): tf_data_checks, ("tensorflow", "ibot"): ibot_centering_checks}[BACKEND, mode]
        # JAX: one process for the data-parallel and model-parallel checks on the same 4
        # devices (a start costs ~10 s), both against one one-device run (the same seed and
        # data give the same run). Not under tf.distribute: a second MirroredStrategy's
        # all-reduce fails in the same process.
        if (BACKEND, mode) == ("jax", "data"):
            single = train("none")
            results = jax_data_checks(single)
            results["ibot"] = ibot_centering_checks()
            results["model"] = jax_model_checks(single)
        else:
            results = checks()
        print("RESULT " + json.dumps(results))
