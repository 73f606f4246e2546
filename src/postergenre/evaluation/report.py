"""The evaluation report: one self-contained HTML page a person reads top to bottom.

Under its title, where its numbers came from (`Provenance`, id `provenance`): the data
(synthetic demo posters or real ones, as `register` tells them apart), the data version,
the code's commit and a date that is never the clock's (SOURCE_DATE_EPOCH, else the
commit's), so a rerun writes the same bytes.

Sections (each an element with a fixed id, which the browser test checks): the gate's
decision (evaluate leaves a marked placeholder; the gate writes the page again with its
decision there, as the report a person reads: `write_decided_report`), the headline
table against the baselines with bootstrap intervals, predicted positives per genre,
the per-genre table of each model, ROC / PR curves, training curves, the first and last
conv filters of each model, each said to be learned from the posters, or random, or
pretrained and frozen (`filter_origin`), and test posters with true and predicted genres
and a Grad-CAM heat map. Figures are inlined as PNG data URIs, so the file is the whole
report (the Kubeflow UI shows an `HTML` artifact as one file).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from postergenre.atomic import atomic_open
from postergenre.evaluation.metrics import BASELINES, COMPARED_METRICS, LAST_BLESSED
from postergenre.genres import GENRES

SECTIONS = ("decision", "headline", "predicted-positives", "per-genre", "curves", "training",
            "filters", "posters")
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.baseline td{color:#777} tr.reference td{font-style:italic}
.posters{display:flex;flex-wrap:wrap;gap:12px}
.poster{width:180px;font-size:12px} .poster img{width:84px;image-rendering:pixelated}
.miss{color:#b00} .hit{color:#070}
#provenance{border:1px solid #ccc;padding:4px 10px;font-size:14px}
#provenance .demo{color:#b00}
"""

# evaluate's page holds the decision section between these two markers; the gate
# replaces what lies between them.
DECISION_START = "<!-- gate decision -->"
DECISION_END = "<!-- /gate decision -->"


@dataclass(frozen=True)
class Provenance:
    """Where a report's numbers came from, said under its title."""

    data_source: str | None = None  # "demo", "real", or None: not recorded
    data_version: str | None = None
    commit: str | None = None  # lineage.code_commit
    date: str | None = None  # YYYY-MM-DD, reproducible.page_date
    date_from: str | None = None  # what the date is: SOURCE_DATE_EPOCH or the commit's

    @classmethod
    def of_run(cls, data_version: str | None, data_source: str | None) -> Provenance:
        """The data as given, and the code that runs now (its commit and date)."""
        from postergenre.lineage import code_commit
        from postergenre.reproducible import page_date

        commit, when = code_commit()
        date = page_date(when)
        date_from = None if date is None else (
            "SOURCE_DATE_EPOCH" if os.environ.get("SOURCE_DATE_EPOCH", "").strip()
            else "the commit's date")
        return cls(data_source, data_version or None, commit or None,
                   date.strftime("%Y-%m-%d") if date else None, date_from)


def _provenance_html(provenance: Provenance) -> str:
    source = provenance.data_source
    if source == "demo":
        data = ('<b class="demo">synthetic demo posters</b> (<code>postergenre ingest '
                "--source demo</code>): these numbers show that the stages work, not how "
                "well a model reads real posters")
    elif source == "real":
        data = "<b>real posters</b>"
    else:
        data = "<b>not recorded</b> (demo or real posters: unknown)"
    when = (f"{html.escape(provenance.date)} ({html.escape(provenance.date_from or '')})"
            if provenance.date else "not recorded (set SOURCE_DATE_EPOCH)")
    return (f'<div id="provenance"><p>Data: {data}.</p><p>Data version <code>'
            f"{html.escape(provenance.data_version or 'not recorded')}</code> · code commit "
            f"<code>{html.escape(provenance.commit or 'not recorded')}</code> · date "
            f"{when}</p></div>")


def filter_origin(trainable: bool, training: Mapping[str, Any] | None) -> str:
    """Where a conv layer's filters come from, from whether it was trainable in the saved
    model and the model's training.json: learned from these posters, or random, or
    pretrained, and not trained here."""
    if training is None:
        return "origin not recorded (no training.json)"
    weights = (training.get("params") or {}).get("weights")
    if trainable:
        if weights is None:
            return "learned: trained from scratch on these posters"
        start = "random" if weights == "none" else str(weights)
        return f"learned: fine-tuned on these posters, from {start} weights"
    if weights == "none":
        return "random: a randomly initialised, frozen layer; never trained"
    if weights is None:
        return "not trained (frozen)"
    return f"pretrained ({weights} weights) and frozen: not learned from these posters"


def _img(png: bytes | None, alt: str, width: str = "100%") -> str:
    if png is None:
        return f"<p>({html.escape(alt)}: not available)</p>"
    data = base64.b64encode(png).decode()
    return (f'<img alt="{html.escape(alt)}" style="max-width:{width}" '
            f'src="data:image/png;base64,{data}">')


def _rgb_png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV failed to encode a PNG")
    return encoded.tobytes()


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else f"{value:.3f}"


def _headline_table(evaluation) -> str:
    intervals = evaluation.bootstrap.get("intervals", {})
    cols = list(COMPARED_METRICS)  # the full set: metrics_all.json
    head = "".join(f"<th>{c}</th>" for c in ["model", *cols])
    head += "".join(f"<th>{m} CI</th>" for m in ("f1_micro", "f1_macro", "map_macro"))
    rows = []
    for name, values in evaluation.headline.items():
        kind = ("baseline" if name in BASELINES else
                "reference" if name == LAST_BLESSED else "model")
        cells = [f"<td>{html.escape(name)}</td>"]
        cells += [f"<td>{_fmt(values.get(c))}</td>" for c in cols]
        for metric in ("f1_micro", "f1_macro", "map_macro"):
            ci = intervals.get(name, {}).get(metric, {})
            cells.append(f"<td>[{_fmt(ci.get('low'))}, {_fmt(ci.get('high'))}]</td>")
        rows.append(f'<tr class="{kind}">{"".join(cells)}</tr>')
    conf = evaluation.bootstrap.get("confidence", 0.95)
    note = (f"<p>Test split, {len(evaluation.y_test)} movies, at the served operating point: "
            "the per-genre thresholds chosen on validation (thresholds.json), the ones "
            f"predict and batch-predict use. Intervals: {int(conf * 100)}% paired bootstrap, "
            f"{evaluation.bootstrap.get('resamples')} resamples. Baselines in grey: "
            "<b>null</b> predicts no genre, <b>most_frequent</b> / <b>top3</b> always "
            "predict the training split's most frequent genre(s).</p>")
    return f"{note}<table><tr>{head}</tr>{''.join(rows)}</table>"


def _predicted_positives_table(evaluation) -> str:
    names = list(evaluation.per_genre)
    head = "<th>genre</th><th>support</th>" + "".join(f"<th>{html.escape(n)}</th>"
                                                      for n in names)
    rows = []
    for genre in GENRES:
        support = evaluation.per_genre[names[0]][genre]["support"]
        cells = "".join(f"<td>{evaluation.per_genre[n][genre]['predicted_positives']}</td>"
                        for n in names)
        rows.append(f"<tr><td>{genre}</td><td>{support}</td>{cells}</tr>")
    return ("<p>How many test movies each scorer labels with each genre (served "
            "thresholds), beside how many have it: a model that never predicts a genre "
            f"cannot be right about it.</p><table><tr>{head}</tr>{''.join(rows)}</table>")


def _per_genre_tables(evaluation, models: list[str]) -> str:
    cols = ("support", "predicted_positives", "f1", "ap", "auc", "threshold")
    parts = []
    for name in models:
        head = "".join(f"<th>{c}</th>" for c in ("genre", *cols))
        rows = []
        for genre in GENRES:
            row = evaluation.per_genre[name][genre]
            cells = "".join(f"<td>{row[c]}</td>" if c in ("support", "predicted_positives")
                            else f"<td>{_fmt(row[c])}</td>" for c in cols)
            rows.append(f"<tr><td>{genre}</td>{cells}</tr>")
        parts.append(f"<h3>{html.escape(name)}</h3><table><tr>{head}</tr>{''.join(rows)}"
                     "</table>")
    return "".join(parts)


def _filters(evaluation, models: list[str]) -> str:
    from postergenre.evaluation.figures import filter_grid_png
    from postergenre.serving.gradcam import conv_layers

    parts = ["<p>Each model's first and last conv layer, and where its filters come from: "
             "only a trained layer's filters were learned from these posters.</p>"]
    for name in models:
        scored = evaluation.scored[name]
        convs = conv_layers(scored.model) if scored.model is not None else []
        if not convs:
            parts.append(f"<p>{html.escape(name)}: no conv layers</p>")
            continue
        path = Path(scored.model_dir or "") / "training.json"
        training = json.loads(path.read_text()) if scored.model_dir and path.is_file() \
            else None
        cells = []
        for layer, which in ((convs[0], "first"), (convs[-1], "last")):
            kernel = layer.get_weights()[0]
            origin = filter_origin(bool(layer.trainable), training)
            cells.append(
                '<figure style="display:inline-block;width:48%;margin:0 1% 0 0">'
                + _img(filter_grid_png(kernel, f"{name}: {which} conv layer {layer.name} "
                                               f"{tuple(kernel.shape)}"),
                       f"{name} {which} conv filters")
                + f'<figcaption class="origin">{html.escape(name)}, {which} conv layer: '
                f"{html.escape(origin)}</figcaption></figure>")
        parts.append("".join(cells))
    return "".join(parts)


def _posters(evaluation, prepared_dir, models: list[str], n_posters: int) -> str:
    from postergenre.data.shards import iter_records
    from postergenre.serving.gradcam import gradcam, overlay

    if not models or n_posters <= 0:
        return "<p>No trained model or no posters asked for.</p>"
    best = max(models, key=lambda m: evaluation.headline[m].get("map_macro") or 0.0)
    s = evaluation.scored[best]
    records = list(itertools.islice(iter_records(prepared_dir, "test"), n_posters))
    images = np.stack([r["image"] for r in records]).astype(np.float32)
    scores = s.test_scores[:len(records)]
    top = scores.argmax(axis=1)
    heat = gradcam(s.model, images, top)
    cards = []
    for i, record in enumerate(records):
        truth = {GENRES[g] for g in np.flatnonzero(record["labels"])}
        predicted = [GENRES[g] for g in np.flatnonzero(scores[i] >= s.genre_thresholds)]
        shown = ", ".join(
            f'<span class="{"hit" if g in truth else "miss"}">{g}</span>' for g in predicted
        ) or "<i>none</i>"
        cards.append(
            f'<div class="poster">{_img(_rgb_png(record["image"]), "poster", "84px")}'
            f'{_img(_rgb_png(overlay(record["image"], heat[i])), "Grad-CAM", "84px")}'
            f'<div><b>{html.escape(record["imdb_id"])}</b></div>'
            f'<div>true: {", ".join(sorted(truth)) or "<i>none</i>"}</div>'
            f'<div>predicted: {shown}</div>'
            f'<div>heat map: {GENRES[top[i]]} ({scores[i, top[i]]:.2f})</div></div>')
    return (f"<p>The first {len(records)} test posters, scored by <b>{html.escape(best)}</b> "
            "(highest mAP) with its per-genre thresholds; green = correct genre, red = "
            "wrong. The Grad-CAM heat map shows where the model looked for its top genre."
            f'</p><div class="posters">{"".join(cards)}</div>')


def write_report(evaluation, report_path: str | os.PathLike[str],
                 prepared_dir: str | os.PathLike[str], n_posters: int = 12,
                 provenance: Provenance | None = None) -> Path:
    """Write the HTML report of an `evaluate.Evaluation`; `provenance` (default: nothing
    recorded of the data) goes under its title."""
    # Matplotlib and scikit-learn load here, not with the module: the gate only rewrites
    # the page's decision (write_decided_report).
    from postergenre.evaluation.figures import micro_curves_png, training_curves_png

    models = [m for m in evaluation.scored if m not in BASELINES and m != LAST_BLESSED]
    y = evaluation.y_test
    curves = [_img(micro_curves_png(y, {n: s.test_scores for n, s in evaluation.scored.items()},
                                    models), "micro-averaged ROC and PR")]
    # The per-genre grids are the ones evaluate drew for its DVC image plots (a grid
    # costs about a second of CPU to draw).
    for name in models:
        for kind in ("roc", "pr"):
            curves.append(_img(evaluation.genre_curves[name, kind],
                               f"{name} {kind} per genre", "49%"))
    reference = (f"<p>Last blessed model re-scored on this test split: "
                 f"<code>{html.escape(evaluation.reference_entry)}</code></p>"
                 if evaluation.reference_entry else
                 "<p>No blessed model in the registry yet: this run has nothing to compare "
                 "with.</p>")
    body = {
        "decision": ("Gate decision", DECISION_START + (
            "<p>Not judged yet: this page is evaluate's. The gate writes it again with its "
            "decision here (reports/report.html under DVC, the gate's report artifact on "
            "Kubeflow).</p>") + DECISION_END),
        "headline": ("Headline metrics against the baselines",
                     _headline_table(evaluation) + reference),
        "predicted-positives": ("Predicted positives per genre",
                                _predicted_positives_table(evaluation)),
        "per-genre": ("Per-genre metrics", _per_genre_tables(evaluation, models)),
        "curves": ("ROC and precision-recall curves", "".join(curves)),
        "training": ("Training curves",
                     _img(training_curves_png(evaluation.histories, models),
                          "training curves")),
        "filters": ("Conv filters: learned, random or pretrained",
                    _filters(evaluation, models)),
        "posters": ("Test posters with Grad-CAM",
                    _posters(evaluation, prepared_dir, models, n_posters)),
    }
    sections = "".join(f'<section id="{key}"><h2>{title}</h2>{content}</section>'
                       for key, (title, content) in body.items())
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>postergenre "
            f"evaluation</title><style>{STYLE}</style></head><body>"
            f"<h1>postergenre evaluation</h1>"
            f"{_provenance_html(provenance or Provenance())}{sections}</body></html>")
    with atomic_open(report_path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return Path(report_path)


def _decision_html(blessing: dict) -> str:
    """The gate's decision, the model it chose with its served metrics and thresholds (the
    operating point predict serves), and every rule that failed, as the report's opening."""
    decision = blessing.get("decision", "rejected")
    chosen = blessing.get("model")
    colour = "#070" if decision == "blessed" else "#b00"
    parts = [f'<p class="decision" style="font-size:18px;color:{colour}"><b>'
             f"{html.escape(decision.upper())}</b>"
             + (f": <code>{html.escape(chosen)}</code> is the model to serve" if chosen
                else ": no model passed every rule; nothing is registered") + "</p>"]
    metrics = blessing.get("metrics") or {}
    if metrics:
        cells = "".join(f"<th>{html.escape(k)}</th>" for k in metrics)
        values = "".join(f"<td>{_fmt(v)}</td>" for v in metrics.values())
        parts.append("<p>Its test metrics at the served operating point:</p>"
                     f"<table><tr>{cells}</tr><tr>{values}</tr></table>")
    thresholds = blessing.get("thresholds") or {}
    per_genre = thresholds.get("per_genre") or {}
    if per_genre:
        heads = "".join(f"<th>{html.escape(g)}</th>" for g in per_genre)
        values = "".join(f"<td>{v:.2f}</td>" for v in per_genre.values())
        parts.append("<p>The served operating point: a genre is predicted when its "
                     "probability reaches its threshold (chosen on validation; "
                     "thresholds.json, what predict and batch-predict use).</p>"
                     f'<table style="font-size:11px"><tr>{heads}</tr><tr>{values}</tr>'
                     "</table>")
    versus = blessing.get("versus") or {}
    if versus.get("model") and versus.get("differences"):
        rows = []
        for model, metrics_diff in versus["differences"].items():
            if model in BASELINES:
                continue
            for metric, ci in metrics_diff.items():
                rows.append(f"<tr><td>{html.escape(model)}</td><td>{html.escape(metric)}</td>"
                            f"<td>{_fmt(ci.get('estimate'))}</td>"
                            f"<td>[{_fmt(ci.get('low'))}, {_fmt(ci.get('high'))}]</td></tr>")
        parts.append(f"<p>Each model minus the reference <code>"
                     f"{html.escape(str(versus['model']))}</code> (reported, not gated "
                     "on; an interval holding 0 means no measured difference):</p><table><tr>"
                     "<th>model</th><th>metric</th><th>difference</th><th>interval</th></tr>"
                     + "".join(rows) + "</table>")
    failed = blessing.get("failed_rules") or []
    if failed:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in failed)
        parts.append(f"<p>Rules that failed ({len(failed)}):</p><ul>{items}</ul>")
    else:
        parts.append("<p>Every rule passed.</p>")
    return "".join(parts)


def write_decided_report(evaluation_page: str | os.PathLike[str], blessing: dict,
                         report_path: str | os.PathLike[str]) -> Path:
    """Write evaluate's page again with the gate's decision in its opening section."""
    page = Path(evaluation_page).read_text(encoding="utf-8")
    start, end = page.find(DECISION_START), page.find(DECISION_END)
    if start < 0 or end < start:
        raise ValueError(f"{evaluation_page}: no gate-decision placeholder; is it a page "
                         "written by this version's evaluate?")
    page = (page[:start + len(DECISION_START)] + _decision_html(blessing) + page[end:])
    with atomic_open(report_path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return Path(report_path)


# At most this many failed rules are listed on the decision card (the blessing has all).
CARD_FAILED_RULES = 10


def decision_markdown(blessing: Mapping[str, Any],
                      metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """The gate's decision as a short Markdown card (the Kubeflow UI's Markdown viewer):
    the decision and the model, every scorer's test metrics beside the baselines', and
    the rules that failed."""
    chosen = blessing.get("model")
    blessed = blessing.get("decision") == "blessed" and chosen
    rules = [r for r in blessing.get("rules") or [] if r.get("model") == chosen]
    lines = [f"## Gate: BLESSED `{chosen}`" if blessed else "## Gate: REJECTED", ""]
    lines.append(f"`{chosen}` is the model to serve: {sum(r['passed'] for r in rules)} of "
                 f"{len(rules)} rules pass; it goes into the registry." if blessed else
                 "No model passed every rule: nothing is registered, the registry's "
                 "latest model stays.")
    lines += ["", "Test split, at the per-genre thresholds chosen on validation:", "",
              "| scorer | " + " | ".join(COMPARED_METRICS) + " |",
              "|---|" + "---:|" * len(COMPARED_METRICS)]
    for name, values in metrics.items():
        label = (f"**{name}** (blessed)" if name == chosen and blessed else
                 f"{name} *(baseline)*" if name in BASELINES else
                 f"{name} *(registry's last blessed)*" if name == LAST_BLESSED else name)
        lines.append(f"| {label} | " + " | ".join(_fmt(values.get(m)) for m in
                                                    COMPARED_METRICS) + " |")
    compared = blessing.get("compared_with")
    lines += ["", f"Compared with the registry's last blessed entry `{compared}`." if compared
              else "The registry held no blessed model: nothing to compare with."]
    failed = list(blessing.get("failed_rules") or [])
    if failed:
        lines += ["", f"Rules that failed ({len(failed)}):", ""]
        lines += [f"- {line}" for line in failed[:CARD_FAILED_RULES]]
        if len(failed) > CARD_FAILED_RULES:
            lines.append(f"- ... and {len(failed) - CARD_FAILED_RULES} more (the blessing "
                         "lists every rule)")
    lines += ["", "Every rule with its value and threshold: the `blessing` artifact; the "
              "whole evaluation: the `report` artifact."]
    return "\n".join(lines) + "\n"
