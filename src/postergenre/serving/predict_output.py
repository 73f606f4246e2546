"""What `postergenre predict` prints: one document, as JSON, a table or CSV.

The document names what was served (model, registry entry, training data version and
whether it was the demo's, thresholds file with its sha256), its warnings, and per poster
the genres at or above their served thresholds (most probable first) and the top-k
ranking; a poster that could not be scored carries its error instead.

JSON is for programs (the default when stdout is not a terminal), the table for people
(the default on a terminal), CSV for spreadsheets: one row per poster with its genres,
its top-k and all 19 probabilities.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np

from postergenre.atomic import atomic_open
from postergenre.genres import GENRES
from postergenre.serving.predict import PosterResult, Predictor

FORMATS = ("json", "table", "csv")
DEFAULT_TOP_K = 3
DIGITS = 4  # probabilities are model outputs, not measurements: 4 decimals is plenty


def choose_format(requested: str | None, stream: IO[str]) -> str:
    """The requested format, else a table on a terminal and JSON when piped."""
    if requested is not None:
        return requested
    return "table" if stream.isatty() else "json"


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The k most probable genres, most probable first (ties in vocabulary order)."""
    order = np.argsort(-probabilities, kind="stable")[:max(0, k)]
    return [(GENRES[g], float(probabilities[g])) for g in order]


def ranked_genres(result: PosterResult) -> list[int]:
    """Indices of the poster's genres (at or above threshold), most probable first."""
    p = result.probabilities
    assert p is not None  # ranked only for a scored poster
    return [int(g) for g in np.argsort(-p, kind="stable") if GENRES[g] in result.genres]


def poster_record(result: PosterResult, thresholds: np.ndarray, k: int) -> dict[str, Any]:
    """One poster: its genres above threshold and its top-k, or its error."""
    record: dict[str, Any] = {"poster": result.poster, "error": result.error}
    if result.probabilities is None:
        return record
    p = result.probabilities
    record["genres"] = [{"genre": GENRES[g], "probability": round(float(p[g]), DIGITS),
                         "threshold": round(float(thresholds[g]), DIGITS)}
                        for g in ranked_genres(result)]
    record["top_k"] = [{"genre": genre, "probability": round(value, DIGITS)}
                       for genre, value in top_k(p, k)]
    record["explanation"] = result.explanation
    if result.warning:
        record["warning"] = result.warning
    return record


def prediction_document(predictor: Predictor, results: Sequence[PosterResult],
                        k: int = DEFAULT_TOP_K) -> dict[str, Any]:
    """Everything predict reports, as plain JSON-ready data."""
    info = predictor.info
    assert info is not None  # Predictor fills it in
    model = asdict(info)
    model["thresholds"] = {"path": model.pop("thresholds"),
                           "sha256": model.pop("thresholds_sha256")}
    return {
        "model": model,
        "warnings": info.warnings,
        "top_k": k,
        "posters": [poster_record(r, predictor.thresholds, k) for r in results],
        "scored": sum(r.error is None for r in results),
        "failed": sum(r.error is not None for r in results),
    }


def format_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _pairs(entries: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{e['genre']} {e['probability']:.2f}" for e in entries)


def format_table(document: dict[str, Any]) -> str:
    """A header naming the model, then one aligned row per poster: its top-k, then its
    genres at or above their thresholds (most probable first)."""
    model = document["model"]
    source = {"demo": " (demo data)", "real": " (real posters)"}.get(model["data_source"], "")
    lines = [f"model       {model['name']}  {model['entry'] or model['path']}"
             + (f"  registered {model['registered_at']}" if model["registered_at"] else ""),
             f"trained on  {model['data_version'] or 'unknown data version'}{source}",
             f"thresholds  {model['thresholds']['path'] or 'none: 0.5 for every genre'}", ""]
    # Top-k before the genres: its width is fixed, while a poor model may put many genres
    # above their thresholds.
    rows: list[tuple[str, str, str | None]] = [
        ("poster", f"top {document['top_k']}", "genres (at or above threshold)")]
    for record in document["posters"]:
        if record["error"] is None:
            rows.append((record["poster"], _pairs(record["top_k"]),
                         _pairs(record["genres"]) or "(none)"))
        else:  # the error runs across the other columns
            rows.append((record["poster"], f"ERROR {record['error']}", None))
    first = max(len(row[0]) for row in rows)
    second = max(len(row[1]) for row in rows if row[2] is not None)
    for poster, middle, last in rows:
        if last is None:
            lines.append(f"{poster:<{first}}  {middle}")
        else:
            lines.append(f"{poster:<{first}}  {middle:<{second}}  {last}".rstrip())
    return "\n".join(lines)


CSV_COLUMNS = ("poster", "error", "genres", "top_k", *GENRES)


def write_csv(results: Sequence[PosterResult], handle: IO[str], k: int = DEFAULT_TOP_K) -> None:
    """One row per poster: poster, error, genres ("A|B", most probable first), top-k
    ("A:0.8100|B:0.5500"), then the 19 probabilities (empty for a poster not scored)."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        if r.probabilities is None:
            writer.writerow([r.poster, r.error or "", "", "", *[""] * len(GENRES)])
            continue
        ranked = "|".join(f"{genre}:{value:.{DIGITS}f}" for genre, value
                          in top_k(r.probabilities, k))
        genres = "|".join(GENRES[g] for g in ranked_genres(r))
        writer.writerow([r.poster, r.error or "", genres, ranked,
                         *(f"{p:.6f}" for p in r.probabilities)])


def write_csv_file(results: Sequence[PosterResult], path: str | os.PathLike[str],
                   k: int = DEFAULT_TOP_K) -> Path:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        write_csv(results, handle, k)
    return Path(path)
