"""`keras-mim pretrain --method audiomae`: the built-in audio sets, a folder of audio files,
and the argument checks."""

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
])
def test_bad_arguments_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *argv, "--output", str(tmp_path / "run")])
    assert error.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
