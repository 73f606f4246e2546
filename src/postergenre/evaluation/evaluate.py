"""The `evaluate` stage: every model, three baselines and the last blessed model, scored
the same way on test.

For each scorer: scores on validation choose the decision thresholds (one global
threshold maximising micro-F1, and one per genre maximising that genre's F1), scores on
test give the metrics; test labels never influence a threshold. The baselines (`null`:
no genre, constant scores; `most_frequent`; `top3`) go through the very same code, so a
0.89 per-label accuracy can no longer hide a useless model. When the registry holds a
blessed model, it is re-scored on this test split so the gate can compare it with the
candidates on the same movies (paired bootstrap).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from postergenre.atomic import write_json
from postergenre.configs import EvaluateConfig
from postergenre.data.shards import check_split, dataset, labels_of, to_model_size
from postergenre.evaluation.bootstrap import paired_bootstrap
from postergenre.evaluation.metrics import (
    BASELINES,
    DVC_METRICS,
    LAST_BLESSED,
    METRICS_FILE_KEYS,
    MOST_FREQUENT,
    NULL_MODEL,
    TOP3,
    compute_metrics,
    micro_pr,
    micro_roc,
)
from postergenre.evaluation.styles import plot_fields
from postergenre.evaluation.thresholds import OperatingPoint, choose_operating_point
from postergenre.genres import GENRES
from postergenre.progress import Progress

log = logging.getLogger(__name__)
# Written beside metrics.json: every metric, and one small file per model for DVC.
from postergenre.evaluation.layout import (  # noqa: E402 - the folder's names
    ALL_METRICS_FILE,
    BOOTSTRAP_FILE,
    DVC_METRICS_DIR,
    METRICS_FILE,
    PER_GENRE_FILE,
    PLOTS_DIR,
    REPORT_FILE,
    SCORES_DIR,
    THRESHOLDS_FILE,
)

# The DVC plots evaluate writes into its plots folder (every scorer in each file).
ROC_FILE, PR_FILE, HISTORY_FILE = "roc.json", "pr.json", "history.json"
# Extra headline keys: the same F1s with the per-genre thresholds (what `predict` uses).


def model_image_size(model) -> int:
    """The square side in pixels a model takes."""
    return int(model.input_shape[1])


def predict_split(model, prepared_dir: str | os.PathLike[str], split: str,
                  batch_size: int = 64) -> np.ndarray:
    """A model's (n, 19) scores on one split, in shard order (the order of `labels_of`).

    A model trained at another image size (the last blessed model, before a change of
    `augment.image_size`) gets the shards resized to its input ("area": a fair shrink).
    """
    size = model_image_size(model)
    images = dataset(prepared_dir, split, batch_size).map(lambda x, y: to_model_size(x, size))
    return np.asarray(model.predict(images, verbose=0), dtype=np.float64)


def null_scores(n: int) -> np.ndarray:
    """The null model: the same score (zero) for every genre, so it predicts none."""
    return np.zeros((n, len(GENRES)), dtype=np.float64)


def top_k_scores(n: int, train_labels: np.ndarray, k: int) -> np.ndarray:
    """Score 1 for the training split's `k` most frequent genres, 0 for the others."""
    scores = np.zeros((n, len(GENRES)), dtype=np.float64)
    # int64: the labels are uint8, and negating an unsigned count wraps around (a genre
    # with no example would then rank first).
    counts = np.asarray(train_labels).sum(axis=0).astype(np.int64)
    scores[:, np.argsort(-counts, kind="stable")[:k]] = 1.0
    return scores


def _clean(value):
    """JSON has no NaN: write None, which every reader (and the gate) treats as missing."""
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


@dataclass
class Scored:
    """One scorer's served operating point (chosen on validation) and its scores."""

    point: OperatingPoint
    val_scores: np.ndarray
    test_scores: np.ndarray
    model: object | None = None  # the Keras model (None for a baseline)
    model_dir: Path | None = None

    @property
    def threshold(self) -> float:
        """The global micro-F1 threshold (step 1 of the policy; not what is served)."""
        return self.point.global_threshold

    @property
    def genre_thresholds(self) -> np.ndarray:
        """The served per-genre thresholds."""
        return self.point.per_genre


@dataclass(frozen=True)
class Labels:
    """The labels and movie ids of the three splits (training movies counted once)."""

    train_prior: np.ndarray  # each genre's frequency among training movies
    train: np.ndarray
    y_val: np.ndarray
    val_ids: list[str]
    y_test: np.ndarray
    test_ids: list[str]


@dataclass
class Evaluation:
    """Everything evaluate computed: what the files hold, and what the report draws."""

    y_test: np.ndarray
    test_ids: list[str]
    scored: dict[str, Scored]
    headline: dict[str, dict]
    per_genre: dict[str, dict]
    bootstrap: dict
    reference_entry: str | None = None
    histories: dict[str, list] = field(default_factory=dict)
    # Each trained model's per-genre ROC and PR grids as PNG, by (model, "roc" or "pr"):
    # drawn once, written as DVC image plots and shown in the report.
    genre_curves: dict[tuple[str, str], bytes] = field(default_factory=dict)


def _score(labels: Labels, val_scores: np.ndarray, test_scores: np.ndarray,
           config: EvaluateConfig, **kw) -> Scored:
    point = choose_operating_point(labels.y_val, val_scores, labels.train_prior,
                                   config.shrinkage, config.max_positive_ratio,
                                   config.threshold_micro_f1_slack, config.seed)
    return Scored(point, val_scores, test_scores, **kw)


def _metrics(labels: Labels, s: Scored) -> tuple[dict, dict]:
    """Every metric at the served operating point (the per-genre thresholds)."""
    result = compute_metrics(labels.y_test, s.test_scores, s.genre_thresholds,
                             prior=labels.train_prior)
    return result["headline"], result["per_genre"]


def _labels_checked(prepared_dir: str | os.PathLike[str], split: str
                    ) -> tuple[np.ndarray, list[str]]:
    """A split's labels and ids, its shards read through and its record count checked
    against the manifest first (shards.check_split): scoring a shard cut at a record
    boundary would report metrics on part of the test set as if it were all of it."""
    check_split(prepared_dir, split)
    return labels_of(prepared_dir, split)


def read_labels_of_splits(prepared_dir: str | os.PathLike[str]) -> Labels:
    train_labels, train_ids = _labels_checked(prepared_dir, "train")
    # Count each training movie once: augmented copies would tilt the baselines.
    _, first = np.unique(train_ids, return_index=True)
    train_labels = train_labels[first]
    y_val, val_ids = _labels_checked(prepared_dir, "validation")
    y_test, test_ids = _labels_checked(prepared_dir, "test")
    prior = train_labels.astype(np.float64).mean(axis=0)
    return Labels(prior, train_labels, y_val, list(val_ids), y_test, list(test_ids))


def score_all(
    prepared_dir: str | os.PathLike[str],
    model_dirs: Mapping[str, str | os.PathLike[str]],
    registry: str | os.PathLike[str] | None = None,
    config: EvaluateConfig | None = None,
) -> tuple[dict[str, Scored], Labels, str | None]:
    """Thresholds (validation) and test scores for the models, baselines and last blessed."""
    from postergenre.serving.registry import fetch_latest
    from postergenre.training.outputs import (
        load_model,  # TensorFlow loads only when models are scored
    )

    if not model_dirs:
        raise ValueError("evaluate needs at least one model")
    clash = set(model_dirs) & {*BASELINES, LAST_BLESSED}
    if clash:
        raise ValueError(f"{sorted(clash)} are reserved names; give the model another name")
    config = config or EvaluateConfig()
    batch_size = config.batch_size
    labels = read_labels_of_splits(prepared_dir)
    train_labels, y_val, y_test = labels.train, labels.y_val, labels.y_test

    to_score: dict[str, Path] = {name: Path(d) for name, d in model_dirs.items()}
    reference_entry = None
    if registry:
        entry = fetch_latest(registry)
        if entry is not None:
            to_score[LAST_BLESSED] = entry / "model"
            reference_entry = entry.name
            log.info("evaluate: comparing with the last blessed model %s", entry.name)
    scored: dict[str, Scored] = {}
    # A line per model scored when piped (a model's scoring takes minutes on real data).
    with Progress("evaluate", len(to_score), "model", every_step=True) as progress:
        for name, model_dir in to_score.items():
            model = load_model(model_dir)
            scored[name] = _score(labels,
                                  predict_split(model, prepared_dir, "validation", batch_size),
                                  predict_split(model, prepared_dir, "test", batch_size),
                                  config, model=model, model_dir=model_dir)
            progress.update(1, {"": f"{name} scored"})
    for name, make in ((NULL_MODEL, lambda n: null_scores(n)),
                       (MOST_FREQUENT, lambda n: top_k_scores(n, train_labels, 1)),
                       (TOP3, lambda n: top_k_scores(n, train_labels, 3))):
        scored[name] = _score(labels, make(len(y_val)), make(len(y_test)), config)
    return scored, labels, reference_entry


def evaluate_models(
    prepared_dir: str | os.PathLike[str],
    model_dirs: Mapping[str, str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: EvaluateConfig | None = None,
    *,
    registry: str | os.PathLike[str] | None = None,
    data_version: str | None = None,
    data_source: str | None = None,
) -> dict:
    """Write into `out_dir` the headline metrics (DVC metrics), per-genre tables, curves
    (PLOTS_DIR), bootstrap intervals, thresholds, every movie's scores (SCORES_DIR) and the
    HTML report, each under its fixed name; return the headline metrics. The report says
    what the data was (`data_source`: "demo", "real" or None for unknown), its version,
    the code's commit and date (report.Provenance)."""
    config = config or EvaluateConfig()
    versus = _reference_model(config.reference_model, model_dirs)  # before hours of scoring
    scored, labels, reference_entry = score_all(prepared_dir, model_dirs, registry, config)
    y_test, test_ids = labels.y_test, labels.test_ids
    headline: dict[str, dict] = {}
    per_genre: dict[str, dict] = {}
    for name, s in scored.items():
        headline[name], per_genre[name] = _metrics(labels, s)
        log.info("%s: f1_micro %.3f, map_macro %.3f at the served thresholds (capped: %s)",
                 name, headline[name]["f1_micro"], headline[name]["map_macro"],
                 ", ".join(s.point.capped) or "none")
    boot = paired_bootstrap(
        y_test, {name: (s.test_scores, s.genre_thresholds) for name, s in scored.items()},
        resamples=config.bootstrap_resamples, confidence=config.confidence, seed=config.seed,
        reference=LAST_BLESSED if LAST_BLESSED in scored else None,
        versus=versus)
    boot["reference_entry"] = reference_entry

    out = Path(out_dir)
    plots = out / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    # One file per plot, one row per point with the scorer's name in `model` and how it is
    # drawn (styles.py: its colour, the same in every plot, and its kind): the DVC
    # template (.dvc/plots/by_model.json) draws one line per model, so a new model in
    # params.yaml needs no change to dvc.yaml.
    models = list(model_dirs)
    write_json(plots / ROC_FILE, [{**plot_fields(name, models), **point} for name in scored
                                  for point in micro_roc(y_test, scored[name].test_scores)])
    write_json(plots / PR_FILE, [{**plot_fields(name, models), **point} for name in scored
                                 for point in micro_pr(y_test, scored[name].test_scores)])
    histories = {}
    for name in model_dirs:
        history = Path(model_dirs[name]) / "history.json"
        if history.is_file():
            histories[name] = json.loads(history.read_text())
    write_json(plots / HISTORY_FILE, [{**plot_fields(name, models), **epoch}
                                      for name, rows in histories.items() for epoch in rows])
    evaluation = Evaluation(y_test, test_ids, scored, headline, per_genre, boot,
                            reference_entry, histories)
    from postergenre.evaluation.figures import write_genre_curve_figures

    evaluation.genre_curves = write_genre_curve_figures(evaluation, plots, models)

    write_metrics(headline, out / METRICS_FILE)
    write_json(out / PER_GENRE_FILE, _clean(per_genre))
    write_json(out / BOOTSTRAP_FILE, _clean(boot))
    write_json(out / THRESHOLDS_FILE, {
        name: s.point.as_json(config.max_positive_ratio)
        for name, s in scored.items()})
    write_movie_scores(scored, labels, out / SCORES_DIR)
    from postergenre.evaluation.report import Provenance, write_report

    write_report(evaluation, out / REPORT_FILE, prepared_dir, n_posters=config.report_posters,
                 provenance=Provenance.of_run(data_version, data_source))
    return headline


def write_metrics(headline: Mapping[str, Mapping], metrics_path: str | os.PathLike[str]
                  ) -> None:
    """`metrics_path` holds the few metrics a person compares per model (and the gate
    reads); beside it, `metrics_all.json` holds every metric, and `metrics/NAME.json` one
    model's DVC metrics each (a directory DVC shows as a row per model)."""
    metrics_path = Path(metrics_path)
    write_json(metrics_path, _clean({name: {k: values.get(k) for k in METRICS_FILE_KEYS}
                                     for name, values in headline.items()}))
    write_json(metrics_path.with_name(ALL_METRICS_FILE), _clean(headline))
    per_model = metrics_path.with_name(DVC_METRICS_DIR)
    per_model.mkdir(parents=True, exist_ok=True)
    for stale in per_model.glob("*.json"):  # a model dropped from params.yaml
        if stale.stem not in headline:
            stale.unlink()
    for name, values in headline.items():
        write_json(per_model / f"{name}.json", _clean({k: values.get(k) for k in DVC_METRICS}))


def _reference_model(name: str, models: Mapping[str, object]) -> str | None:
    """The configured reference model; a name that is not among the models is a
    configuration error, named."""
    if not name:
        return None
    if name not in models:
        raise ValueError(f"evaluate.reference_model: {name!r} is not among the models "
                         f"{sorted(models)}")
    return name


def write_movie_scores(scored: Mapping[str, Scored], labels: Labels,
                       out_dir: str | os.PathLike[str]) -> list[Path]:
    """`OUT/{validation,test}/NAME.csv` per scorer: each movie's id, true genres, the
    genres predicted at the served thresholds and the 19 probabilities."""
    import pandas as pd

    from postergenre.data.labels import write_table

    written = []
    for split, ids, y in (("validation", labels.val_ids, labels.y_val),
                          ("test", labels.test_ids, labels.y_test)):
        for name, s in scored.items():
            scores = s.val_scores if split == "validation" else s.test_scores
            predicted = scores >= s.genre_thresholds
            table = pd.DataFrame({
                "imdb_id": ids,
                "genres": ["|".join(g for g, on in zip(GENRES, row, strict=True) if on)
                           for row in y.astype(bool)],
                "predicted": ["|".join(g for g, on in zip(GENRES, row, strict=True) if on)
                              for row in predicted],
            })
            probabilities = pd.DataFrame(np.round(scores, 6), columns=list(GENRES))
            path = Path(out_dir) / split / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append(write_table(pd.concat([table, probabilities], axis=1), path))
    return written
