"""ProbeMonitor: frozen-feature accuracy of the encoder while it pretrains."""

import numpy as np
import pytest

from keras_mim.evaluation import probe_monitor
from keras_mim.evaluation.probe_monitor import ProbeMonitor
from tests.models.test_image_classifier import tiny_encoder


def numpy_knn(bank, bank_labels, queries, k, temperature=0.07, num_classes=4):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    predictions = []
    for q in queries:
        similarity = bank @ q
        top = np.argsort(-similarity)[:k]
        votes = np.zeros(num_classes)
        for i in top:
            votes[bank_labels[i]] += np.exp(similarity[i] / temperature)
        predictions.append(votes.argmax())
    return np.asarray(predictions)


def fake_features(n_train, y_train, y_test, informative_block=0):
    """Block `informative_block` separates the classes of train AND test images; the others are noise."""
    rng = np.random.default_rng(0)
    labels = np.concatenate([y_train, y_test])
    informative = rng.normal(size=(len(labels), 8)) * 0.3
    informative[np.arange(len(labels)), labels] += 2.0
    table = {(b, "avg"): rng.normal(size=(len(labels), 8)).astype("float32") for b in (0, 1, None)}
    table[(informative_block, "avg")] = informative.astype("float32")
    return table


@pytest.mark.backend_independent
def test_monitor_probes_every_n_epochs_and_chooses_the_block_on_train_images(monkeypatch):
    y_train, y_test = np.arange(80) % 4, np.arange(40) % 4
    table = fake_features(80, y_train, y_test)
    monkeypatch.setattr(probe_monitor, "block_features", lambda *a, **k: table)
    monitor = ProbeMonitor(np.zeros((80, 16, 16, 3)), y_train, np.zeros((40, 16, 16, 3)), y_test, every=2, k=5)
    monitor.set_params({"epochs": 3})
    monitor.set_model(tiny_encoder())
    logs = [{} for _ in range(3)]
    for epoch in range(3):
        monitor.on_epoch_end(epoch, logs[epoch])
    assert [r["epoch"] for r in monitor.records] == [2, 3]  # every 2nd epoch and the last
    assert logs[0] == {} and set(logs[1]) == {"probe_top1", "probe_last_top1", "knn_top1"}
    record = monitor.records[0]
    assert record["probe_block"] == "0" and record["probe_top1"] > 0.9 and sorted(record["blocks"]) == ["0", "1", "last"]
    assert record["probe_last_top1"] < 0.6  # noise
    output = table[(None, "avg")]
    expected = np.mean(numpy_knn(output[:80], y_train, output[80:], k=5) == y_test)
    assert record["knn_top1"] == pytest.approx(expected)


@pytest.mark.backend_independent
def test_a_block_informative_on_test_images_only_is_not_chosen(monkeypatch):
    """The choice reads a validation split of the train images: a block that separates the
    test images but not the train images must not be chosen (a leaking choice would)."""
    y_train, y_test = np.arange(80) % 4, np.arange(40) % 4
    table = fake_features(80, y_train, y_test, informative_block=0)
    leaky = np.random.default_rng(1).normal(size=(120, 8)).astype("float32")
    leaky[80 + np.arange(40), y_test] += 5.0  # class signal on the test images only
    table[(1, "avg")] = leaky
    monkeypatch.setattr(probe_monitor, "block_features", lambda *a, **k: table)
    monitor = ProbeMonitor(np.zeros((80, 16, 16, 3)), y_train, np.zeros((40, 16, 16, 3)), y_test, k=5)
    monitor.set_model(tiny_encoder())
    record = monitor.evaluate(1)
    assert record["probe_block"] == "0"


@pytest.mark.backend_independent
@pytest.mark.parametrize("kwargs, message", [({"every": 0}, "every"), ({"k": -1}, "k")])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProbeMonitor(np.zeros((8, 16, 16, 3)), np.arange(8) % 2, np.zeros((2, 16, 16, 3)), [0, 1], **kwargs)


def test_monitor_runs_inside_fit(rng):
    from keras_mim.models import MaskedAutoencoder

    model = MaskedAutoencoder.from_preset("mae_vit_test")
    x = rng.random((12, 16, 16, 3)).astype("float32")
    monitor = ProbeMonitor(x[:8], np.arange(8) % 2, x[8:], np.arange(4) % 2, k=3)
    model.compile(optimizer="adam")
    history = model.fit(x, epochs=1, batch_size=4, verbose=0, callbacks=[monitor])
    assert 0 <= history.history["probe_top1"][0] <= 1 and 0 <= history.history["knn_top1"][0] <= 1
    assert [r["epoch"] for r in monitor.records] == [0, 1]  # the starting weights, then each epoch
    assert sorted(monitor.records[0]["blocks"]) == [*map(str, range(model.encoder.depth - 1)), "last"]
