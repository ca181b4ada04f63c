"""benchmarks/train_speed.py: the analytic FLOP count, the GPU peak table, the README
table writer, and a --quick smoke run on the current backend (no timing assertions)."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCH)

import readme_tables  # noqa: E402
import train_speed_lib as lib  # noqa: E402


def test_vit_base_encoder_flops_match_the_published_count():
    # ViT-B/16 at 224 px on all 197 tokens: 17.58 G multiply-adds (timm's vit_base_patch16_224,
    # whose 768 x 1000 head is negligible), i.e. 2 x 17.58e9 FLOPs.
    f = lib.mae_forward_flops(lib.CONFIGS["base"], mask_ratio=0.0)
    assert f["patch_embed"] + f["encoder"] == pytest.approx(2 * 17.58e9, rel=0.01)


def test_flops_by_hand_for_a_toy_config():
    cfg = dict(image_size=8, patch_size=4, embed_dim=4, depth=1, num_heads=1, decoder_dim=2, decoder_depth=1,
               decoder_num_heads=1)
    # N = 4 patches of P = 48 values, mask 0.5: K = 2 visible, encoder on 3 tokens, decoder on 5.
    def block(t, d):  # qkv, proj, mlp up, mlp down, then QK^T and AV
        return 2 * t * (d * 3 * d + d * d + d * 4 * d + 4 * d * d) + 2 * t * t * d * 2
    expected = 2 * 4 * 48 * 4 + block(3, 4) + 2 * 3 * 4 * 2 + block(5, 2) + 2 * 5 * 2 * 48
    assert lib.mae_forward_flops(cfg, 0.5)["total"] == expected
    assert lib.mae_train_flops(cfg, 0.5, batch_size=3) == 3 * 3 * expected


@pytest.mark.parametrize("config, preset", [("nano", "mae_vit_nano_patch2_16"), ("base", "mae_vit_base_patch16"),
                                            ("large", "mae_vit_large_patch16")])
def test_configs_are_the_presets_they_name(config, preset):
    from keras_mim.models.presets import PRESETS

    spec, cfg = PRESETS[preset], lib.CONFIGS[config]
    assert cfg["same_as"] == preset
    assert {k: cfg[k] for k in spec["encoder"]} == spec["encoder"]
    assert (cfg["decoder_dim"], cfg["decoder_depth"], cfg["decoder_num_heads"]) == tuple(
        spec["decoder"][k] for k in ("decoder_dim", "depth", "num_heads"))


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756),
                                           ("NVIDIA H200", 989), ("NVIDIA A100-SXM4-80GB", 312),
                                           ("NVIDIA L40S", 362), ("NVIDIA L4", 121), ("cpu", None), (None, None)])
def test_gpu_peak_lookup(name, tflops):
    peak = lib.gpu_bf16_peak(name)
    assert (peak is None) if tflops is None else peak == tflops * 1e12


def test_resolve_runners():
    assert lib.resolve_runners("jax,hf") == ["hf", "keras-jax"]
    assert lib.resolve_runners("tensorflow") == ["keras-tf-xla", "keras-tf"]
    with pytest.raises(ValueError, match="nope"):
        lib.resolve_runners("nope")


def test_readme_update_replaces_only_the_marked_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_tables.START}\nold table\n{readme_tables.END}\noutro\n")
    assert readme_tables.update(str(readme), "| new |\n") == \
        f"intro\n{readme_tables.START}\n| new |\n{readme_tables.END}\noutro\n"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="speed-table:start"):
        readme_tables.update(str(readme), "x")


# One run per CI run, in a child process of its own: keras_mim on torch beside the peer (HF
# ViTMAE), and the tf.data pipeline measurement. The JAX and TensorFlow runners are the
# same worker code under another KERAS_BACKEND (benchmarks/train_speed_runners.py).
RUNNERS = "keras-torch,hf"


@pytest.mark.slow
@pytest.mark.backend_independent  # its child processes pick their backends
def test_quick_run_writes_the_expected_json(tmp_path):
    out = tmp_path / "speed.json"
    # the masked phase only (each phase starts its runner processes anew, ~40 s); the mask-0
    # speedup arithmetic is checked on constructed runs below
    cmd = [sys.executable, os.path.join(BENCH, "train_speed.py"), "--quick", "--backends", RUNNERS,
           "--mask-zero", "none", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"machine", "args", "configs", "runs", "mask_speedup", "pipeline", "wall_time_s"} <= set(result)
    assert result["machine"]["cpu_cores"] > 0 and result["machine"]["versions"]["keras"]
    runners = RUNNERS.split(",")
    runs = {(r["runner"], r["mask_ratio"]): r for r in result["runs"]}
    assert set(runs) == {(r, 0.75) for r in runners}
    for (runner, ratio), run in runs.items():
        assert run["status"] == "ok", (runner, ratio, run["error"])
        assert len(run["step_times_s"]) == 2 * 2  # 2 rounds x 2 steps
        for key in ("median_step_s", "images_per_s", "achieved_tflops", "matmul_best_tflops",
                    "fraction_of_matmul", "train_flops_per_step"):
            assert run[key] > 0 and math.isfinite(run[key]), (runner, key, run[key])
        assert run["memory"]["peak_rss_mb"] > 0
        assert run["setup"]["params"] > 0 and run["setup"]["device"] == "cpu"
        if runner != "hf":  # HF's loss is NaN without hidden patches (0 / 0); keras_mim scores all
            assert math.isfinite(run["final_loss"])
    assert result["mask_speedup"] == []  # no mask-0 phase
    assert runs[("keras-torch", 0.75)]["time_vs_hf"] > 0
    assert result["pipeline"]["status"] == "ok"
    assert all(v["images_per_s"] > 0 for v in result["pipeline"]["variants"])
    assert "| config | runner |" in proc.stdout  # the printed table
    text = readme_tables.render([str(out)])
    assert "images / s" in text
    result["mask_speedup"] = lib.mask_speedups(constructed_runs(), 0.75)  # the table of a run with mask-0 phases
    assert "measured speedup" in lib.render_tables(result)


def constructed_runs():
    def run(runner, ratio, seconds, status="ok"):
        return {"config": "quick", "runner": runner, "mask_ratio": ratio, "median_step_s": seconds, "status": status}

    return [run("hf", 0.75, 0.2), run("hf", 0.0, 0.5), run("keras-torch", 0.75, 0.1), run("keras-torch", 0.0, 0.4),
            run("keras-jax", 0.75, 0.1), run("keras-jax", 0.0, 0.3, status="error")]


def test_mask_speedups_pair_each_masked_run_with_its_mask_0_run():
    runs = constructed_runs()
    speedups = {s["runner"]: s for s in lib.mask_speedups(runs, 0.75)}
    assert sorted(speedups) == ["hf", "keras-torch"]  # keras-jax's mask-0 phase failed
    assert speedups["hf"]["speedup"] == pytest.approx(2.5) and speedups["keras-torch"]["speedup"] == pytest.approx(4.0)
    f75, f0 = lib.mae_forward_flops(lib.CONFIGS["quick"], 0.75), lib.mae_forward_flops(lib.CONFIGS["quick"], 0.0)
    assert speedups["hf"]["flop_ratio"] == pytest.approx(f0["total"] / f75["total"]) and f0["total"] > f75["total"]
    lib.add_ratios(runs)
    assert runs[2]["time_vs_hf"] == pytest.approx(0.5) and runs[3]["time_vs_hf"] == pytest.approx(0.8)


@pytest.mark.backend_independent  # plain JAX, no Keras
def test_hand_written_jax_step_trains_and_counts_its_hlo():
    import numpy as np

    import jax_reference_mae as ref

    cfg = dict(lib.CONFIGS["quick"])
    trainer = ref.ReferenceMAE(cfg, mask_ratio=0.75, num_channels=3, seed=0)
    images = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    losses = [trainer.step(images) for _ in range(30)]  # one batch again and again: the loss must fall
    assert np.isfinite(losses).all() and losses[-1] < 0.9 * losses[0], losses
    d, dd, p = cfg["embed_dim"], cfg["decoder_dim"], cfg["patch_size"] ** 2 * 3
    blocks = cfg["depth"] * (12 * d * d + 13 * d) + cfg["decoder_depth"] * (12 * dd * dd + 13 * dd)
    assert trainer.params == blocks + (p * d + d) + d + 2 * d + (d * dd + dd) + dd + 2 * dd + (dd * p + p)
    summary = ref.hlo_summary(trainer.lowered(images).compile().as_text())
    assert summary["dots_total"] > 0 and summary["fusions"] > 0 and summary["sorts"] >= 1


@pytest.mark.backend_independent  # numpy only
def test_patch_finetune_labels_each_patch_by_its_majority_class():
    import numpy as np

    from patch_finetune import majority_labels, seed_runs

    rng = np.random.default_rng(0)
    maps = rng.integers(0, 4, size=(3, 8, 12))
    labels = majority_labels(maps, 4, 4)
    assert labels.shape == (3, 6)
    for n in range(3):  # row-major over the 2 x 3 patches; ties go to the lowest class, as argmax
        for k, (i, j) in enumerate((i, j) for i in range(2) for j in range(3)):
            cell = maps[n, 4 * i:4 * i + 4, 4 * j:4 * j + 4].ravel()
            assert labels[n, k] == np.bincount(cell, minlength=4).argmax()
    runs = iter([{"mean_iou": 0.2, "object_accuracy": 0.4}, {"mean_iou": 0.4, "object_accuracy": 0.6}])
    summary = seed_runs("3,5", lambda seed: next(runs))
    assert summary["seeds"] == [3, 5] and summary["mean_iou"] == pytest.approx(0.3)
    assert summary["object_accuracy"] == pytest.approx(0.5) and len(summary["runs"]) == 2
