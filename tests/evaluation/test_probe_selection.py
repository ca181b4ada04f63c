"""Choosing the probed block and pooling on a validation split of the training images."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.evaluation import probe_selection
from keras_mim.evaluation.probe_selection import select_probe_features, validation_split
from tests.models.test_image_classifier import tiny_encoder


@pytest.mark.backend_independent
@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=60), st.floats(0.05, 0.9), st.integers(0, 10))
def test_validation_split_is_a_stratified_partition(labels, fraction, seed):
    labels = np.asarray(labels)
    train, validation = validation_split(labels, fraction, seed)
    assert np.array_equal(np.sort(np.concatenate([train, validation])), np.arange(len(labels)))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held = np.isin(members, validation).sum()
        # every class of two or more is on both sides; a lone image stays in training
        assert (1 <= held <= len(members) - 1) if len(members) >= 2 else held == 0


def test_choice_is_the_block_that_separates_the_validation_images(monkeypatch):
    """Features are replaced so that only block 0 with avg pooling carries the class: it is chosen,
    and every candidate (2 blocks x 2 poolings) is scored."""
    rng = np.random.default_rng(0)
    labels = np.arange(80) % 4
    informative = rng.normal(size=(80, 8)) * 0.3
    informative[np.arange(80), labels] += 2.0

    def fake_features(model, images, poolings, batch_size=256):
        keys = [(b, p) for b in (0, None) for p in poolings]
        return {k: informative if k == (0, "avg") else rng.normal(size=(80, 8)) for k in keys}

    monkeypatch.setattr(probe_selection, "block_features", fake_features)
    choice = select_probe_features(tiny_encoder(), np.zeros((80, 16, 16, 3), "float32"), labels)
    assert (choice["block"], choice["pooling"]) == (0, "avg") and choice["validation_accuracy"] > 0.9
    assert sorted(choice["table"]) == ["0/avg", "0/cls", "last/avg", "last/cls"]


def test_block_features_are_what_the_probe_reads(rng):
    from keras_mim import LinearProbe

    encoder = tiny_encoder()
    x = rng.random((6, 16, 16, 3)).astype("float32")
    features = probe_selection.block_features(encoder, x, ("cls", "avg"), batch_size=4)
    for (block, pooling), value in features.items():
        probe = LinearProbe(encoder, 3, pooling=pooling, block=block)
        np.testing.assert_allclose(value, probe.predict_features(x), rtol=1e-4, atol=1e-4)
