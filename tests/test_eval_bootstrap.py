"""The paired bootstrap: its metrics agree with scikit-learn, its intervals behave."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from postergenre.evaluation.bootstrap import average_precision, paired_bootstrap, round_metrics


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
    with pytest.raises(KeyError, match="versus 'probe'"):
        paired_bootstrap(y, {"a": (good, 0.5)}, versus="probe")


def test_versus_a_reference_model_in_the_same_rounds_as_the_last_blessed(data):
    y, good, noise = data
    models = {"good": (good, 0.5), "probe": (noise, 0.5), "last_blessed": (noise.copy(), 0.5)}
    result = paired_bootstrap(y, models, resamples=50, seed=0, reference="last_blessed",
                              versus="probe")
    assert result["versus"]["model"] == "probe"
    against_probe = result["versus"]["differences"]
    assert set(against_probe) == {"good", "last_blessed"}
    # Same rounds: the probe and last_blessed hold the same scores, so both comparisons of
    # `good` agree to the bit, and last_blessed - probe is exactly zero.
    assert against_probe["good"] == result["differences"]["good"]
    assert against_probe["last_blessed"]["map_macro"]["high"] == 0
    assert against_probe["good"]["map_macro"]["low"] > 0.1


def test_evaluate_names_a_reference_model_that_is_not_trained_before_scoring(tmp_path):
    from postergenre.configs import EvaluateConfig
    from postergenre.evaluation.evaluate import evaluate_models

    # No prepared data at all: the setting is checked before anything is read or scored.
    with pytest.raises(ValueError, match=r"evaluate.reference_model: 'probe' .*\['cnn'\]"):
        evaluate_models(tmp_path / "prepared", {"cnn": tmp_path / "cnn"}, tmp_path / "out",
                        EvaluateConfig(reference_model="probe"))
    assert not (tmp_path / "out").exists()


def test_a_statistic_the_resampling_pushes_up_gets_a_reflected_interval():
    """Rare genres' AP rises when resampling duplicates their few positives: the rounds
    lean above the estimate, and the basic interval (2e - q_hi, 2e - q_lo) reflects the
    lean instead of reporting it as a better model."""
    rng = np.random.default_rng(7)
    y = np.zeros((400, 19), int)
    for g in range(19):
        y[rng.choice(400, 4, replace=False), g] = 1  # four positives a genre
    scores = np.clip(0.35 * y + rng.random((400, 19)), 0, 1)
    result = paired_bootstrap(y, {"a": (scores, 0.5)}, resamples=300, seed=5)
    ci = result["intervals"]["a"]["map_macro"]
    rng = np.random.default_rng(5)  # the same rounds, drawn as paired_bootstrap draws them
    rounds = [round_metrics(y[rows], scores[rows], 0.5)["map_macro"]
              for rows in (rng.integers(0, 400, 400) for _ in range(300))]
    q_low, q_high = np.quantile(rounds, [0.025, 0.975])
    assert np.mean(rounds) > ci["estimate"] + 0.005  # the lean
    assert result["method"] == "basic"
    assert ci["low"] == pytest.approx(2 * ci["estimate"] - q_high)
    assert ci["high"] == pytest.approx(2 * ci["estimate"] - q_low)
    assert ci["high"] - ci["estimate"] < ci["estimate"] - ci["low"]
