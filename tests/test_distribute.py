"""keras_mim.distribute: data parallel (JAX, TensorFlow), model parallel (JAX), the
`--distribute` CLI flag and the torch error.

The multi-device checks run in a child process (tests/distribute_worker.py) on
simulated CPU devices, since the device count is fixed when the backend starts:
`XLA_FLAGS=--xla_force_host_platform_device_count=N` for JAX, logical CPU devices
(`tf.config.set_logical_device_configuration`) for TensorFlow. Each child sets its own
`KERAS_BACKEND`, so the JAX children are defined (and run) only in the JAX pass of the
test suite and the TensorFlow children only in the TensorFlow pass; they would check
the same thing in every pass. The torch pass runs the in-process tests, which include
the torch errors. Everything else runs in every pass.

Tolerances of "multi-device run == one-device run" (2 SGD steps, momentum 0.9, lr 0.1,
on one fixed global batch of 8, same initial weights and seed):

- JAX `DataParallel` / `ModelParallel`: the same program on the global batch, partitioned
  by XLA. Masks are drawn for the whole batch at once (identical to one device); only
  the order of float32 sums changes (per-device partial sums, then an all-reduce).
  Measured: loss differs by ~1e-6 relative, weights by ~1e-7; asserted rtol 1e-5
  (loss) and atol 1e-5 (weights).
- TensorFlow `MirroredStrategy`: each replica runs the step on its half of the batch.
  With random masks the two runs cannot match (replica 1 draws from its own stream on
  purpose, so that replicas do not repeat each other's masks), so this comparison uses
  a fixed mask generator (the same hidden tokens everywhere). What it then checks is the
  loss and gradient arithmetic: the mean of the per-replica losses must equal the
  global-batch loss (the MAE loss hides the same number of tokens in every sample, so
  the per-replica masked means average to the global one), i.e. each replica's loss must
  be divided by the number of replicas before the gradients are summed. Same tolerances
  as JAX (measured ~3e-6 on the weights).

iBOT's centers (EMAs of the teacher's batch-mean scores) must average the global batch on
several devices: JAX does in its one program (checked in the data-parallel worker's
process); under `tf.distribute` the center variables aggregate by mean (without it, replica 0 keeps its own half's mean and the replicas drift
apart, measured).
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_mim
from keras_mim import cli, distribute

BACKEND = keras.backend.backend()
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(__file__).with_name("distribute_worker.py")
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5
TINY = ["--epochs", "1", "--num-images", "32", "--batch-size", "16", "--preset", "mae_vit_test"]


def run_worker(backend, mode, devices, *args, timeout=300):
    """Run tests/distribute_worker.py on `devices` simulated CPU devices; its RESULT lines."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_MIM_CLI_REEXEC", None)
    if backend == "jax":  # the caller's XLA flags too (tools/test.sh's lighter LLVM passes: the child's
        # compiles measured 2-3x faster), the device count last so that it wins
        flags = os.environ.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    proc = subprocess.run(
        [sys.executable, str(WORKER), mode, str(devices), *args],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [line[len("RESULT "):] for line in proc.stdout.splitlines() if line.startswith("RESULT ")], proc


def worker_checks(backend, mode, devices):
    lines, _ = run_worker(backend, mode, devices)
    (line,) = lines
    return json.loads(line)


def assert_matches_single_device(results, kind):
    """Loss history and weights of the `kind` run against the one-device run."""
    single, multi = np.array(results["loss_single"]), np.array(results[f"loss_{kind}"])
    assert len(single) == 2 and np.all(np.isfinite(single))
    ratio = multi / single
    assert np.allclose(multi, single, rtol=LOSS_RTOL), (
        f"{kind}-parallel losses {multi} != one-device losses {single} (ratio {ratio}); a ratio equal "
        "to the number of replicas means compute_loss does not divide by it "
        "(keras_mim.distribute.scale_loss)"
    )
    assert single[1] < single[0]  # the two steps did train
    assert results[f"weight_diff_{kind}"] < WEIGHT_ATOL


# ---------------------------------------------------------------- in process, every backend


def test_check_kind():
    assert distribute.check_kind("none", "torch") == "none"
    assert distribute.check_kind("data", "jax") == "data"
    assert distribute.check_kind("data", "tensorflow") == "data"
    assert distribute.check_kind("model", "jax") == "model"
    with pytest.raises(ValueError, match=r"`kind` must be one of .*'bogus'"):
        distribute.check_kind("bogus")
    with pytest.raises(ValueError, match=r"not supported on the 'torch' backend.*no distribution support"):
        distribute.check_kind("data", "torch")
    with pytest.raises(ValueError, match=r"model-parallel .*'tensorflow' backend.*only on jax"):
        distribute.check_kind("model", "tensorflow")


def test_scope_on_the_running_backend():
    """One device: `"none"` and `"data"` train a step (torch: `"data"` raises, naming torch)."""
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype("float32")
    with distribute.distribution_scope("none") as nothing:
        assert nothing is None
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="'torch' backend"):
            with distribute.data_parallel():
                pytest.fail("entered a data-parallel scope on torch")
        with pytest.raises(ValueError, match="'torch' backend"):
            distribute.list_devices()
        return
    assert distribute.num_replicas("data") == len(distribute.list_devices()) >= 1
    with distribute.data_parallel() as dist:
        assert dist is not None
        model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
        model.compile(optimizer="adamw")
        loss = model.fit(x, batch_size=4, epochs=1, verbose=0).history["loss"]
    assert np.isfinite(loss[0])
    if BACKEND == "jax":
        assert keras.distribution.distribution() is None  # the scope is left as found


def test_model_parallel_is_jax_only():
    if BACKEND == "jax":
        with pytest.raises(ValueError, match="`model_parallel_size` must be a positive int dividing"):
            distribute.model_parallel(3)
    else:
        with pytest.raises(ValueError, match=f"'{BACKEND}' backend"):
            distribute.distribution_scope("model").__enter__()


def test_check_global_batch():
    assert distribute.check_global_batch(32, 4) == 8
    assert distribute.check_global_batch(5, 1) == 5
    with pytest.raises(ValueError, match=r"`--batch-size`=30 must be divisible by the number of devices, 4.*32"):
        distribute.check_global_batch(30, 4, name="--batch-size")
    with pytest.raises(ValueError, match="`batch_size` must be a positive int, got 0"):
        distribute.check_global_batch(0, 2)
    with pytest.raises(ValueError, match="`num_devices` must be a positive int"):
        distribute.check_global_batch(8, 0)


def expected_axes(path):
    """The layout the map must give `path`, written out independently of its regexes."""
    parts = path.split("/")
    layer, weight = parts[-2], parts[-1]
    parent = parts[-3] if len(parts) > 2 else ""
    in_proj = (parent in ("attn", "self_attn", "cross_attn") and layer in ("qkv", "q", "kv")) or (
        parent == "mlp" and layer == "fc1")
    out_proj = (parent in ("attn", "self_attn", "cross_attn") and layer == "proj") or (
        parent == "mlp" and layer == "fc2")
    if in_proj:
        return (None, "model") if weight == "kernel" else ("model",)
    if out_proj and weight == "kernel":
        return ("model", None)
    return None


@pytest.mark.parametrize("model_cls, preset", [
    (keras_mim.MaskedAutoencoder, "mae_vit_test"),
    (keras_mim.SiameseMAE, "siammae_vit_test"),  # cross-attention blocks (q, kv)
    (keras_mim.SimMIM, "simmim_vit_test"),
])
def test_transformer_layout_map_covers_every_block(model_cls, preset):
    mesh = keras.distribution.DeviceMesh((1, 2), ("batch", "model"), devices=["cpu:0", "cpu:1"])
    layout_map = distribute.transformer_layout_map(mesh)
    model = model_cls.from_preset(preset, seed=0)
    model.build()
    sharded = 0
    for variable in model.variables:
        layout = layout_map[variable.path]  # raises if two patterns match one path
        expected = expected_axes(variable.path)
        assert (None if layout is None else layout.axes) == expected, variable.path
        if expected is not None:
            assert layout.device_mesh is mesh
            for size, axis in zip(variable.shape, expected):
                assert axis is None or size % 2 == 0, variable.path
            sharded += 1
    blocks = len({v.path.rsplit("/", 3)[0] for v in model.variables if expected_axes(v.path)})
    assert sharded >= 4 * blocks >= 8  # every block: its attention and MLP kernels
    assert layout_map["encoder/patch_embed/proj/kernel"] is None
    assert layout_map["encoder/block_0/attn/proj/bias"] is None
    no_bias = distribute.transformer_layout_map(mesh, shard_biases=False)
    assert no_bias["encoder/block_0/attn/qkv/bias"] is None


def test_transformer_layout_map_bad_input():
    with pytest.raises(TypeError, match="`device_mesh` must be a keras.distribution.DeviceMesh"):
        distribute.transformer_layout_map("mesh")
    mesh = keras.distribution.DeviceMesh((1,), ("batch",), devices=["cpu:0"])
    with pytest.raises(ValueError, match=r"`model_axis`='model' is not an axis of `device_mesh` \(axes \('batch',\)\)"):
        distribute.transformer_layout_map(mesh)


def test_one_device_leaves_seeds_and_losses_alone():
    model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=3)
    model.build()
    before = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    assert distribute.distinct_replica_seeds(model) == 0
    after = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert float(distribute.scale_loss(keras.ops.convert_to_tensor(1.5))) == 1.5


def test_fold_replica_keeps_the_first_replica_and_separates_the_others():
    states = [distribute._fold_replica([7, 3], i) for i in range(8)]
    assert states[0] == [7, 3]
    assert len({tuple(s) for s in states}) == 8 and all(s[1] == 3 for s in states)
    # TensorFlow reduces seeds modulo 2**31 - 2 to int32: the replicas stay apart there too
    assert len({s[0] % (2**31 - 2) for s in states}) == 8


def test_cli_distribute_on_torch_exits_2_before_training(tmp_path, capsys, monkeypatch):
    """--distribute data is refused on torch, whatever backend this process runs."""
    monkeypatch.setattr(cli, "run_pretrain", lambda args: pytest.fail("training started"))
    monkeypatch.setattr(cli.subprocess, "call", lambda *a, **k: pytest.fail("restarted on torch"))
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *TINY, "--output", str(tmp_path / "run"), "--backend", "torch", "--distribute", "data"])
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert "(--distribute='data') is not supported on the 'torch' backend" in err and "jax or tensorflow" in err
    assert not (tmp_path / "run").exists()


def test_cli_distribute_is_recorded_and_checked(tmp_path, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    assert cli.main(["pretrain", *TINY, "--output", str(tmp_path / "a")]) == 0
    assert seen[-1].distribute == "none"
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *TINY, "--output", str(tmp_path / "b"), "--distribute", "all"])
    assert error.value.code == 2 and "invalid choice: 'all'" in capsys.readouterr().err
    if BACKEND != "torch":  # a global batch that does not split over 3 devices
        monkeypatch.setattr(distribute, "num_replicas", lambda *a, **k: 3)
        with pytest.raises(SystemExit) as error:
            cli.main(["pretrain", *TINY, "--output", str(tmp_path / "c"), "--distribute", "data"])
        assert error.value.code == 2
        assert "--batch-size=16 must be divisible by the number of devices, 3" in capsys.readouterr().err
    assert len(seen) == 1


# ------------------------------------------- child processes on simulated devices, per pass


def check_cli_run(backend, tmp_path, devices=2):
    """`--distribute data` end to end on `devices` simulated devices, against the same
    command on one device: JAX gives the same losses (rtol 1e-4: float32 sums in
    another order over 2 AdamW steps), TensorFlow close ones (replica 1 draws other
    masks), and in particular not the sum over replicas."""
    run = tmp_path / "run"
    lines, proc = run_worker(backend, "cli", devices, str(run))
    assert lines == ["bad-batch exit 2", "exit 0", "single exit 0"], proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"--batch-size={2 * devices + 1} must be divisible by the number of devices, {devices}" in proc.stderr
    config = json.loads((run / "config.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert config["args"]["distribute"] == "data" and config["resolved"]["num_devices"] == devices
    assert config["resolved"]["backend"] == backend and history["backend"] == backend
    # several steps per call on JAX; one under tf.distribute, where Keras' multi-step loop fails
    assert config["resolved"]["steps_per_execution"] == (1 if backend == "tensorflow" else 2)
    assert (run / "model.keras").is_file() and (run / "reconstructions.png").is_file()
    single = json.loads((tmp_path / "run-single" / "history.json").read_text())
    assert json.loads((tmp_path / "run-single" / "config.json").read_text())["resolved"]["num_devices"] == 1
    for key in ("final_loss", "heldout_loss", "heldout_pixel_mse"):
        assert np.isfinite(history[key])
        rtol = 1e-4 if backend == "jax" else 0.15
        assert history[key] == pytest.approx(single[key], rel=rtol), key


def check_ibot_centering(results):
    """iBOT's centers after one step on several devices: 0.1 x the teacher's mean score over the
    global batch (as on one device), not over one device's half."""
    assert len(results["devices"]) >= 2 and results["updates_none"] == results["updates_data"] == 1
    for key in ("center", "center2"):
        expected = np.array(results[f"{key}_expected"])
        np.testing.assert_allclose(results[f"{key}_none"], expected, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(results[f"{key}_data"], expected, rtol=1e-4, atol=1e-7)
    # the check can tell: one device's half gives another center
    assert np.abs(np.array(results["center_first_half"]) - results["center_expected"]).max() > 1e-3
    for replica in results.get("center_replicas_data", []):  # tf.distribute: every replica's copy agrees
        np.testing.assert_allclose(replica, results["center_expected"], rtol=1e-4, atol=1e-7)


if BACKEND == "jax":

    @pytest.fixture(scope="module")
    def jax_data():
        return worker_checks("jax", "data", 4)

    def test_jax_data_parallel_ibot_centers_average_the_global_batch(jax_data):
        check_ibot_centering(jax_data["ibot"])

    def test_jax_data_parallel_masks_differ_across_devices(jax_data):
        assert jax_data["devices"] == ["cpu:0", "cpu:1", "cpu:2", "cpu:3"]
        assert not jax_data["per_device_masks_equal"]  # device 0's rows vs device 1's
        assert jax_data["mask_rows_distinct"] == 8  # identical images, 8 different masks
        assert jax_data["masks_equal_single"]  # one global draw, as on one device

    def test_jax_data_parallel_matches_one_device(jax_data):
        assert_matches_single_device(jax_data, "data")

    def test_jax_model_parallel_shards_block_kernels_and_trains(jax_data):
        results = jax_data["model"]  # run in the data-parallel checks' process, on the same 4 devices
        assert results["mesh"] == {"batch": 2, "model": 2}
        shardings = results["shardings"]
        for path, spec in shardings.items():
            axes = expected_axes(path)
            if axes is None:
                assert "model" not in spec, path  # replicated
            else:
                assert spec == str(axes).replace("(", "P(", 1), path  # e.g. P(None, 'model'), P('model',)
        sharded = sum("model" in spec for spec in shardings.values())
        assert sharded == 6 * 3  # qkv, qkv bias, proj, fc1, fc1 bias, fc2 in 2 encoder + 1 decoder blocks
        assert results["optimizer_sharded"] == sharded  # the momentum slots follow their variables
        assert_matches_single_device(results, "model")

    @pytest.mark.slow
    def test_jax_cli_distribute_data(tmp_path):
        check_cli_run("jax", tmp_path)


if BACKEND == "tensorflow":

    def test_tf_mirrored_ibot_centers_average_the_global_batch():
        check_ibot_centering(worker_checks("tensorflow", "ibot", 2))

    @pytest.fixture(scope="module")
    def tf_data():
        return worker_checks("tensorflow", "data", 2)

    def test_tf_mirrored_masks_differ_across_replicas(tf_data):
        assert tf_data["devices"] == ["/device:CPU:0", "/device:CPU:1"] and tf_data["replicas"] == 2
        assert not tf_data["per_device_masks_equal"]  # identical images, replica 0 vs replica 1
        assert tf_data["mask_rows_distinct"] == 8
        (first, second) = tf_data["seed_states"]  # after 2 steps and one more call
        assert first[1] == second[1] == 3 and first[0] != second[0]
        assert first == [0, 3]  # replica 0 keeps the model's own stream
        assert tf_data["seed_states_loaded"] == tf_data["seed_states"]  # load_weights
        assert tf_data["seeds_split_again"] == 7  # mask generator, 2 x 3 drop paths
        assert tf_data["seed_states_split"] == tf_data["seed_states"]

    def test_tf_mirrored_matches_one_device(tf_data):
        assert_matches_single_device(tf_data, "data")

    @pytest.mark.slow
    def test_tf_cli_distribute_data(tmp_path):
        check_cli_run("tensorflow", tmp_path)
