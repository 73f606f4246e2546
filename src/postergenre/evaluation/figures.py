"""Matplotlib figures of an evaluation, as PNG bytes (for the HTML report) or files
(DVC image plots): per-genre and micro ROC / PR curves, training curves, conv filters.
Every scorer is drawn as styles.py says: a model in its one colour, baselines grey and
dashed, the last blessed model dotted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers, CI or Kubeflow pods

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from postergenre.evaluation.styles import style_of  # noqa: E402
from postergenre.genres import GENRES  # noqa: E402


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def genre_curves_png(y_true: np.ndarray, scores: np.ndarray, kind: str, title: str,
                     colour: str) -> bytes:
    """A 4x5 grid: one ROC (`kind='roc'`) or PR (`'pr'`) curve per genre, micro last, in
    the model's `colour`."""
    fig, axes = plt.subplots(4, 5, figsize=(13, 10.5), sharex=True, sharey=True)
    panels = [(g, y_true[:, i], scores[:, i]) for i, g in enumerate(GENRES)]
    panels.append(("micro-average", y_true.ravel(), scores.ravel()))
    for ax, (name, y, s) in zip(axes.flat, panels, strict=True):
        ax.set_title(name, fontsize=9)
        if y.min() == y.max():
            ax.text(0.5, 0.5, "no positive\nand negative", ha="center", va="center",
                    fontsize=8, color="grey")
            continue
        if kind == "roc":
            x, yy, _ = roc_curve(y, s)
            ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
        else:
            precision, x, _ = precision_recall_curve(y, s)
            yy = precision
            ax.axhline(y.mean(), color="lightgrey", lw=0.8)  # a constant scorer's precision
        ax.plot(x, yy, lw=1.2, color=colour)
    fig.suptitle(title)
    fig.supxlabel("false positive rate" if kind == "roc" else "recall")
    fig.supylabel("true positive rate" if kind == "roc" else "precision")
    return _png(fig)


def micro_curves_png(y_true: np.ndarray, scores: dict[str, np.ndarray],
                     models: Sequence[str]) -> bytes:
    """Micro-averaged ROC and PR curves of every scorer, side by side (`models`: the
    run's trained models, in order, for their colours)."""
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, s in scores.items():
        style = style_of(name, models)
        drawn = {"label": name, "color": style.colour, "linestyle": style.line_style,
                 "lw": 1.6 if style.kind == "model" else 1.0}
        fpr, tpr, _ = roc_curve(y_true.ravel(), s.ravel())
        roc_ax.plot(fpr, tpr, **drawn)
        precision, recall, _ = precision_recall_curve(y_true.ravel(), s.ravel())
        pr_ax.plot(recall, precision, **drawn)
    roc_ax.plot([0, 1], [0, 1], color="lightgrey", lw=0.8)
    roc_ax.set(title="ROC, micro-averaged (test)", xlabel="false positive rate",
               ylabel="true positive rate")
    pr_ax.set(title="Precision-recall, micro-averaged (test)", xlabel="recall",
              ylabel="precision")
    pr_ax.legend(fontsize=8)
    return _png(fig)


def training_curves_png(histories: dict[str, list[dict]],
                        models: Sequence[str]) -> bytes | None:
    """Loss (dashed) and validation loss (solid) per epoch in the model's colour, one
    panel per model (None without history)."""
    histories = {k: v for k, v in histories.items() if v}
    if not histories:
        return None
    fig, axes = plt.subplots(1, len(histories), figsize=(5.5 * len(histories), 3.8),
                             squeeze=False)
    for ax, (name, history) in zip(axes[0], histories.items(), strict=True):
        epochs = [e["epoch"] for e in history]
        colour = style_of(name, models).colour
        for key, line in (("loss", "--"), ("val_loss", "-")):
            if key in history[0]:
                ax.plot(epochs, [e[key] for e in history], label=key, color=colour,
                        linestyle=line)
        ax.set(title=f"{name}: training curves", xlabel="epoch", ylabel="loss")
        ax.legend(fontsize=8)
    return _png(fig)


def filter_grid_png(kernel: np.ndarray, title: str, max_filters: int = 64) -> bytes:
    """A conv layer's filters as tiles: RGB for a 3-channel input, else the mean over
    input channels in grey (what the study showed as "features learned")."""
    kernel = np.asarray(kernel, dtype=np.float64)[..., :max_filters]  # (kh, kw, in, out)
    count = kernel.shape[-1]
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.7 + 1, rows * 0.7 + 0.6),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        tile = kernel[..., i]
        tile = tile if tile.shape[-1] == 3 else tile.mean(axis=-1)
        span = tile.max() - tile.min()
        ax.imshow((tile - tile.min()) / span if span else np.zeros_like(tile),
                  cmap=None if tile.ndim == 3 else "gray", interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def write_genre_curve_figures(evaluation, plots_dir: str | os.PathLike[str],
                              models: Sequence[str]) -> dict[tuple[str, str], bytes]:
    """Per-genre ROC and PR grids of each trained model as PNG files (DVC image plots);
    returns each grid's PNG by (model, "roc" or "pr"), for the report to show the same."""
    drawn: dict[tuple[str, str], bytes] = {}
    for name in models:
        scores = evaluation.scored[name].test_scores
        for kind, label in (("roc", "ROC"), ("pr", "Precision-recall")):
            path = Path(plots_dir) / "genres" / f"{kind}_{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            drawn[name, kind] = genre_curves_png(evaluation.y_test, scores, kind,
                                                 f"{name}: {label} per genre (test)",
                                                 style_of(name, models).colour)
            path.write_bytes(drawn[name, kind])
    return drawn
