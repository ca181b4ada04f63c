"""benchmarks/value_study.py end to end on tiny settings (its real runs are benchmarks)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import value_study  # noqa: E402

pytestmark = pytest.mark.one_backend  # the keras-mim commands it runs are tested on every backend elsewhere


def test_quick_run_writes_every_comparison(tmp_path):
    path = tmp_path / "value.json"
    value_study.main(["--sets", "digits", "--quick", "--output", str(tmp_path / "runs"), "--json", str(path)])
    record = json.loads(path.read_text())["sets"]["digits"]
    assert (record["num_pretrain"], record["num_train"], record["num_test"]) == (512, 300, 200)
    results = record["results"]
    for weights in ("pretrained", "random_init"):
        row = results[weights]
        assert {"knn", "probe", "probe_block", "finetune_0.1"} <= set(row)  # --quick: 10% of the labels only
        assert all(0 <= row[k] <= 1 for k in row if k != "probe_block")
    for baseline in ("pixels_logistic_regression", "small_cnn"):
        assert set(results[baseline]) == {"0.1"}
    assert set(record["goals"]) == {"finetune_10pct_gain_points", "probe_gain_points", "target_points"}
    assert record["commands"]["pretrain"].startswith("keras-mim pretrain --data ")
    # the scaling curve: the encoder probed after its (one) epoch, and the figure of it
    assert record["curve"]["epoch"] == [0, 1] and 0 <= record["curve"]["probe_top1"][1] <= 1
    assert (tmp_path / "value.png").stat().st_size > 1000
    # the parts written as separate folders: unlabeled pretraining images, labelled class subfolders
    data = tmp_path / "runs" / "digits" / "data"
    assert len(os.listdir(data / "pretrain")) == 512
    assert sum(len(files) for _, _, files in os.walk(data / "labelled" / "train")) == 300


def test_recipe_search_quick_run_reads_no_test_image(tmp_path):
    import value_recipe

    path = tmp_path / "recipe.json"
    value_recipe.main(["--sets", "digits", "--quick", "--output", str(tmp_path / "runs"), "--json", str(path)])
    record = json.loads(path.read_text())["sets"]["digits"]
    runs = record["runs"]
    assert set(runs) == {"mae_mask75_normpix", "gmml"} and record["chosen"] in runs
    for run in runs.values():
        assert run["epoch"] == [0, 1] and all(0 <= v <= 1 for v in run["probe_top1"] + run["knn_top1"])
        assert "--monitor-data" in run["command"] and run["command"].split("--monitor-data ")[1].split()[0].endswith(
            os.path.join("data", "validation"))  # the labelled train images only
    assert (tmp_path / "recipe.png").stat().st_size > 1000
