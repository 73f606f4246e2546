"""How each scorer is drawn, declared once for every plot (the report's matplotlib figures
and DVC's plots, whose rows carry `colour` and `kind` for the template
`.dvc/plots/by_model.json`).

A trained model keeps one colour in every plot: the n-th model of the run (params.yaml's
order) gets the n-th colour of MODEL_COLOURS, whichever plot it is in and whatever else
is drawn there. Baselines are not models: grey and dashed. The last blessed model (the
registry's, re-scored) is the reference: near-black and dotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postergenre.evaluation.metrics import LAST_BLESSED, MOST_FREQUENT, NULL_MODEL, TOP3

# Tableau 10 without its grey, which the baselines use.
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#bcbd22", "#17becf")
BASELINE_COLOURS = {NULL_MODEL: "#bdbdbd", MOST_FREQUENT: "#969696", TOP3: "#737373"}
REFERENCE_COLOUR = "#252525"
MODEL, BASELINE, REFERENCE = "model", "baseline", "reference"
# matplotlib line styles per kind.
LINE_STYLES = {MODEL: "-", BASELINE: "--", REFERENCE: ":"}


@dataclass(frozen=True)
class Style:
    colour: str
    kind: str  # MODEL, BASELINE or REFERENCE

    @property
    def line_style(self) -> str:
        return LINE_STYLES[self.kind]


def style_of(name: str, models: Sequence[str]) -> Style:
    """The style of the scorer `name`; `models`: the run's trained models, in order."""
    if name in BASELINE_COLOURS:
        return Style(BASELINE_COLOURS[name], BASELINE)
    if name == LAST_BLESSED:
        return Style(REFERENCE_COLOUR, REFERENCE)
    if name not in models:
        raise KeyError(f"{name!r} is neither a baseline nor one of the models {list(models)}")
    return Style(MODEL_COLOURS[list(models).index(name) % len(MODEL_COLOURS)], MODEL)


def plot_fields(name: str, models: Sequence[str]) -> dict[str, str]:
    """What a DVC plot row carries for the template: the scorer, its colour and kind."""
    style = style_of(name, models)
    return {"model": name, "colour": style.colour, "kind": style.kind}
