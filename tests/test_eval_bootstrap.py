"""The paired bootstrap: its metrics agree with scikit-learn, its intervals behave."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from postergenre.bootstrap import average_precision, paired_bootstrap, round_metrics


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    y = (rng.random((150, 19)) < 0.2).astype(int)
    y[:, 4] = 0  # a genre without examples
    good = np.clip(0.5 * y + 0.6 * rng.random((150, 19)), 0, 1)
    noise = rng.random((150, 19))
    return y, good, noise


def test_average_precision_matches_scikit_learn_with_ties(data):
    y, good, _ = data
    coarse = np.round(good, 1)  # many tied scores
    for scores in (good, coarse, np.zeros_like(good)):
        mine = average_precision(y, scores)
        for g in range(19):
            if y[:, g].any():
                assert mine[g] == pytest.approx(average_precision_score(y[:, g], scores[:, g]))
            else:
                assert np.isnan(mine[g])


def test_round_metrics_match_scikit_learn(data):
    y, good, _ = data
    result = round_metrics(y, good, 0.5)
    present = np.flatnonzero(y.sum(axis=0))
    assert result["f1_micro"] == pytest.approx(f1_score(y, good >= 0.5, average="micro"))
    assert result["f1_macro"] == pytest.approx(
        f1_score(y, good >= 0.5, average="macro", labels=present, zero_division=0))
    assert result["map_macro"] == pytest.approx(
        np.mean([average_precision_score(y[:, g], good[:, g]) for g in present]))


def test_intervals_contain_the_estimate_and_separate_good_from_noise(data):
    y, good, noise = data
    result = paired_bootstrap(y, {"good": (good, 0.5), "noise": (noise, 0.5)},
                              resamples=100, seed=0, reference="noise")
    for name in ("good", "noise"):
        for ci in result["intervals"][name].values():
            assert ci["low"] <= ci["estimate"] <= ci["high"]
            assert ci["low"] < ci["high"]
    assert result["differences"]["good"]["map_macro"]["low"] > 0.1
    assert "noise" not in result["differences"]


def test_paired_difference_of_a_model_with_itself_is_exactly_zero(data):
    y, good, _ = data
    result = paired_bootstrap(y, {"a": (good, 0.5), "b": (good.copy(), 0.5)},
                              resamples=30, reference="b")
    for ci in result["differences"]["a"].values():
        assert ci["low"] == ci["high"] == ci["estimate"] == 0


def test_same_seed_same_intervals_and_zero_resamples_collapse(data):
    y, good, _ = data
    one = paired_bootstrap(y, {"a": (good, 0.5)}, resamples=20, seed=3)
    two = paired_bootstrap(y, {"a": (good, 0.5)}, resamples=20, seed=3)
    assert one == two
    flat = paired_bootstrap(y, {"a": (good, 0.5)}, resamples=0)["intervals"]["a"]["f1_micro"]
    assert flat["low"] == flat["high"] == flat["estimate"]


def test_bad_arguments_are_named(data):
    y, good, _ = data
    with pytest.raises(KeyError, match="reference"):
        paired_bootstrap(y, {"a": (good, 0.5)}, reference="missing")
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(y, {"a": (good, 0.5)}, resamples=-1)
