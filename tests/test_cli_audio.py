"""`keras-mim pretrain --method audiomae | pointmae`: the built-in audio and point-cloud sets,
folders of audio files and of point clouds, and the argument checks."""

import json

import numpy as np
import pytest
from scipy.io import wavfile

from keras_mim import cli
from keras_mim.data.sample_audio import tone_clips

TINY = ["--method", "audiomae", "--preset", "audiomae_vit_test", "--epochs", "1", "--batch-size", "8"]


@pytest.mark.one_backend(backend="torch")  # end to end; AudioMAE's step is tested on every backend (the suite)
def test_tones_and_a_folder_of_wavs(tmp_path, capsys):
    run = tmp_path / "tones"
    assert cli.main(["pretrain", *TINY, "--dataset", "tones", "--num-images", "16", "--output", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    history = json.loads((run / "history.json").read_text())
    assert config["args"]["preset"] == "audiomae_vit_test" and np.isfinite(history["heldout_pixel_mse"])
    assert (run / "reconstructions.png").is_file()
    import keras

    model = keras.saving.load_model(run / "model.keras")
    assert type(model).__name__ == "AudioMAE" and model.spectrogram_std > 0  # the training set's statistics
    assert cli.main(["pretrain", "--config", str(run / "config.json"), "--output", str(tmp_path / "again")]) == 0
    folder = tmp_path / "my sounds"
    (folder / "calls").mkdir(parents=True)
    waves, _, _ = tone_clips(20, sample_rate=22050, seconds=0.5, seed=3)
    for i, wave in enumerate(waves):
        wavfile.write(folder / "calls" / f"clip{i}.wav", 22050, (wave * 20000).astype("int16"))
    (folder / "broken.wav").write_text("not audio")
    assert cli.main(["pretrain", *TINY, "--data", str(folder), "--output", str(tmp_path / "folder")]) == 0
    skipped = (tmp_path / "folder" / "skipped_files.txt").read_text(encoding="utf-8")
    assert "broken.wav" in skipped and "calls" not in skipped
    assert json.loads((tmp_path / "folder" / "config.json").read_text())["args"]["num_images"] == 12  # 20 - 8 held out


@pytest.mark.backend_independent
@pytest.mark.parametrize("argv, message", [
    (["--method", "audiomae", "--dataset", "digits"], "pretrains on audio; use --dataset spoken-digits or tones"),
    (["--method", "mae", "--dataset", "tones"], "--dataset tones holds audio"),
    (["--method", "audiomae", "--image-size", "64"], "--image-size does not apply to audio"),
    (["--method", "audiomae", "--preset", "mae_vit_test"], "is an image model; --method audiomae needs an audio"),
    (["--method", "mae", "--preset", "audiomae_vit_test"], "is an audio model"),
    (["--method", "audiomae", "--data", "tfds:mnist"], "takes --data as a folder of audio files"),
    (["--method", "audiomae", "--patch-size", "5"], "frames x mel bins (96, 64) is not divisible by the patch size"),
    (["--method", "pointmae", "--dataset", "tones"], "pretrains on points; use --dataset shapes3d"),
    (["--method", "pointmae", "--image-size", "32"], "do not apply to point clouds"),
    (["--method", "pointmae", "--preset", "mae_vit_test"], "needs a point-cloud preset"),
])
def test_bad_arguments_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *argv, "--output", str(tmp_path / "run")])
    assert error.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.one_backend(backend="torch")  # end to end; PointMAE's step is tested on every backend (the suite)
def test_point_clouds_built_in_and_from_a_folder(tmp_path):
    tiny = ["--method", "pointmae", "--preset", "pointmae_test", "--epochs", "1", "--batch-size", "8"]
    assert cli.main(["pretrain", *tiny, "--num-images", "16", "--output", str(tmp_path / "shapes")]) == 0
    assert (tmp_path / "shapes" / "reconstructions.png").is_file()
    folder = tmp_path / "clouds"
    (folder / "cubes").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        np.save(folder / "cubes" / f"c{i}.npy", rng.uniform(-1, 1, (100 + i, 3)))
    with open(folder / "cubes" / "mesh.ply", "w") as handle:  # an ascii PLY with a face list after the vertices
        handle.write("ply\nformat ascii 1.0\nelement vertex 20\nproperty float x\nproperty float y\n"
                     "property float z\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n")
        handle.writelines(f"{x} {y} {z}\n" for x, y, z in rng.normal(size=(20, 3)))
    (folder / "broken.ply").write_text("not a ply")
    assert cli.main(["pretrain", *tiny, "--data", str(folder), "--output", str(tmp_path / "folder")]) == 0
    skipped = (tmp_path / "folder" / "skipped_files.txt").read_text(encoding="utf-8")
    assert "broken.ply" in skipped and "mesh.ply" not in skipped
    assert json.loads((tmp_path / "folder" / "config.json").read_text())["args"]["num_images"] == 13  # 21 - 8 held out
