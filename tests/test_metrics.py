import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, hamming_loss

from postergenre.evaluation.evaluate import null_scores
from postergenre.evaluation.metrics import choose_threshold, compute_metrics, micro_roc, top_class


@pytest.fixture
def example():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 19)) < 0.15).astype(int)
    y[np.arange(200), rng.integers(0, 19, 200)] = 1
    scores = np.clip(0.6 * y + 0.5 * rng.random((200, 19)), 0, 1)
    return y, scores


def test_metrics_match_scikit_learn(example):
    y, scores = example
    result = compute_metrics(y, scores, threshold=0.5)["headline"]
    predicted = scores >= 0.5
    assert result["f1_micro"] == pytest.approx(f1_score(y, predicted, average="micro"))
    assert result["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert result["hamming_loss"] == pytest.approx(hamming_loss(y, predicted))
    assert result["map_macro"] == pytest.approx(average_precision_score(y, scores,
                                                                        average="macro"))


def test_null_model_scores_zero_f1_and_prevalence_map(example):
    y, _ = example
    result = compute_metrics(y, null_scores(len(y)), threshold=0.5)["headline"]
    assert result["f1_micro"] == 0 and result["recall_samples"] == 0
    assert result["hamming_loss"] == pytest.approx(y.mean())
    assert result["accuracy"] == pytest.approx(1 - y.mean())
    assert result["map_macro"] == pytest.approx(y.mean(axis=0).mean())
    assert result["roc_auc_macro"] == pytest.approx(0.5)
    assert result["top_class"] == 0  # no highest genre when every score ties


def test_threshold_maximises_micro_f1_on_the_given_split(example):
    y, scores = example
    chosen = choose_threshold(y, scores)
    best = f1_score(y, scores >= chosen, average="micro")
    for other in (0.2, 0.4, 0.6, 0.8):
        assert best >= f1_score(y, scores >= other, average="micro")


def test_genre_without_examples_is_left_out_of_macro_averages(example):
    y, scores = example
    y = y.copy()
    y[:, 18] = 0
    result = compute_metrics(y, scores, 0.5)
    assert result["headline"]["genres_evaluated"] == 18
    assert math.isnan(result["per_genre"]["Western"]["ap"])
    assert not math.isnan(result["headline"]["map_macro"])


def test_top_class():
    y = np.zeros((2, 19), int)
    y[0, 3] = y[1, 4] = 1
    scores = np.zeros((2, 19))
    scores[0, 3] = scores[1, 5] = 0.9
    assert top_class(y, scores) == 0.5


def test_roc_has_finite_thresholds(example):
    y, scores = example
    points = micro_roc(y, scores, max_points=50)
    assert len(points) <= 50
    assert all(math.isfinite(p["threshold"]) and p["threshold"] <= 1 for p in points)
    assert points[0]["fpr"] == 0 and points[-1]["tpr"] == 1


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="19"):
        compute_metrics(np.zeros((3, 2)), np.zeros((3, 2)), 0.5)


def test_per_genre_thresholds_maximise_each_genres_f1(example):
    from postergenre.evaluation.metrics import choose_genre_thresholds

    y, scores = example
    thresholds = choose_genre_thresholds(y, scores)
    assert thresholds.shape == (19,)
    for g in (0, 7, 18):
        best = f1_score(y[:, g], scores[:, g] >= thresholds[g])
        for other in np.arange(0.05, 1.0, 0.05):
            assert best >= f1_score(y[:, g], scores[:, g] >= other, zero_division=0) - 1e-12


def test_genre_without_validation_positives_falls_back_to_global(example):
    from postergenre.evaluation.metrics import choose_genre_thresholds

    y, scores = example
    y = y.copy()
    y[:, 5] = 0
    assert choose_genre_thresholds(y, scores, fallback=0.37)[5] == 0.37


def test_per_genre_threshold_array_is_applied_per_column(example):
    y, scores = example
    thresholds = np.full(19, 0.5)
    thresholds[0] = 0.99
    result = compute_metrics(y, scores, thresholds)
    assert result["per_genre"]["Action"]["predicted_positives"] == int((scores[:, 0] >= .99).sum())
    assert result["per_genre"]["Action"]["threshold"] == 0.99
    assert "threshold" not in result["headline"]
    with pytest.raises(ValueError, match="19"):
        compute_metrics(y, scores, np.full(3, 0.5))


def test_micro_pr_curve(example):
    from postergenre.evaluation.metrics import micro_pr

    y, scores = example
    points = micro_pr(y, scores, max_points=40)
    assert len(points) <= 40
    assert all(0 <= p["precision"] <= 1 and 0 <= p["recall"] <= 1 for p in points)


def test_most_frequent_baselines_ignore_absent_genres():
    """uint8 labels with a genre nobody has: the top genres are still the frequent ones."""
    from postergenre.evaluation.evaluate import top_k_scores

    labels = np.zeros((10, 19), dtype=np.uint8)
    labels[:, 6] = 1  # Drama for all
    labels[:4, 3] = 1  # Comedy for some
    top1 = top_k_scores(3, labels, 1)
    top2 = top_k_scores(3, labels, 2)
    assert np.flatnonzero(top1[0]).tolist() == [6]
    assert np.flatnonzero(top2[0]).tolist() == [3, 6]


def test_metrics_json_holds_the_compared_few_and_the_rest_sits_beside_it(tmp_path):
    import json

    from postergenre.evaluation.evaluate import write_metrics
    from postergenre.evaluation.metrics import COMPARED_METRICS, DVC_METRICS, HEADLINE_METRICS

    rng = np.random.default_rng(0)
    y = (rng.random((40, 19)) < 0.2).astype(int)
    full = compute_metrics(y, rng.random((40, 19)), 0.5)["headline"]
    reports = tmp_path / "reports"
    (reports / "metrics").mkdir(parents=True)
    (reports / "metrics" / "dropped_model.json").write_text("{}")
    write_metrics({"cnn": full, "null": full}, reports / "metrics.json")

    few = json.loads((reports / "metrics.json").read_text())
    assert set(few["cnn"]) == {*COMPARED_METRICS, "true_genres_per_movie"}
    assert few["cnn"]["map_macro"] == pytest.approx(full["map_macro"])
    every = json.loads((reports / "metrics_all.json").read_text())
    assert set(HEADLINE_METRICS) <= set(every["cnn"])
    # One small file per model for DVC; a model no longer trained leaves no stale row.
    assert sorted(p.name for p in (reports / "metrics").iterdir()) == ["cnn.json", "null.json"]
    assert set(json.loads((reports / "metrics" / "cnn.json").read_text())) == set(DVC_METRICS)
