"""Labelled folders of audio files and point clouds for evaluation, and the built-in draws."""

import numpy as np
import pytest
from scipy.io import wavfile

from keras_mim.evaluation.labelled_data import stratified_split
from keras_mim.evaluation.labelled_signals import builtin_signals, scan_labelled_signals
from keras_mim.evaluation.model_file import data_kind

pytestmark = pytest.mark.backend_independent  # files and numpy only


def write_clouds(folder, classes, count=5):
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            np.save(folder / c / f"{i}.npy", np.random.default_rng(i).normal(size=(40, 3)))


def test_split_here_or_given(tmp_path):
    write_clouds(tmp_path / "a", ["ring", "cube"])
    (train, train_ids), (test, test_ids) = scan_labelled_signals(tmp_path / "a", "points", test_fraction=0.4)
    assert train is test and train.class_names == ["cube", "ring"]
    assert len(test_ids) == 4 and not set(train_ids) & set(test_ids)
    assert sorted(np.bincount(train.labels[test_ids])) == [2, 2]  # stratified
    write_clouds(tmp_path / "b" / "train", ["x", "y"])
    write_clouds(tmp_path / "b" / "test", ["x", "y"], count=2)
    (train, train_ids), (test, test_ids) = scan_labelled_signals(tmp_path / "b", "points")
    assert len(train_ids) == 10 and len(test_ids) == 4 and train is not test


def test_audio_folder_resampled_and_bad_layouts(tmp_path):
    for c in ("bird", "frog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            wavfile.write(tmp_path / c / f"{i}.wav", 8000, np.zeros(4000, "int16"))
    (train, ids), _ = scan_labelled_signals(tmp_path, "audio", sample_rate=16000)
    assert train.read(ids[:1], 100).shape == (1, 100) and train.durations[0] == 0.5
    wavfile.write(tmp_path / "loose.wav", 8000, np.zeros(4000, "int16"))
    with pytest.raises(ValueError, match="needs one subfolder per class"):
        scan_labelled_signals(tmp_path, "audio")
    write_clouds(tmp_path / "one", ["only"])
    with pytest.raises(ValueError, match="holds one class"):
        scan_labelled_signals(tmp_path / "one", "points")
    with pytest.raises(FileNotFoundError):
        scan_labelled_signals(tmp_path / "missing", "points")


def test_stratified_split_against_a_numpy_rule():
    labels = np.repeat([0, 1, 2], [10, 4, 1])
    train, test = stratified_split(labels, 0.25)
    counts = np.bincount(labels[test], minlength=3)
    assert counts.tolist() == [2, 1, 0]  # round(0.25 n), at least 1, never a whole class
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(15))


def test_builtin_draws_differ_from_pretraining_and_between_splits():
    from keras_mim.data.sample_points import shape_clouds

    train, labels, names = builtin_signals("shapes3d", "train", 64, count=12)
    test = builtin_signals("shapes3d", "test", 64, count=12)[0]
    pretraining = shape_clouds(12, num_points=64, seed=0)[0]
    assert train.shape == (12, 64, 3) and labels[:6].tolist() == list(range(6)) and len(names) == 6
    assert not np.allclose(train, test) and not np.allclose(train, pretraining)
    waves = builtin_signals("tones", "train", 800, sample_rate=8000, count=4)[0]
    assert waves.shape == (4, 800)


def test_data_kind_from_configs():
    assert data_kind({"class_name": "AudioMAE", "config": {"encoder": {"class_name": "ViTEncoder"}}}) == "audio"
    assert data_kind({"class_name": "LinearProbe", "config": {"encoder": {"class_name": "PointEncoder"}}}) == "points"
    assert data_kind({"class_name": "MaskedAutoencoder", "config": {"encoder": {}}}) == "images"
