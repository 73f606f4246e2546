"""The local source: a poster folder you already have, plus its labels CSV.

The CSV has the columns of ../shared/data/*/labels.csv: `imdb_id`, `poster` (a path
relative to the CSV's folder, or absolute) and `genres` (`|`-joined, in the 19-genre
vocabulary) are required; `tmdb_id`, `movielens_id`, `title` and `source_genres` are
kept when present. Every row is checked before anything is written, and every bad row
is named (CSV line, imdb_id, what is wrong). The posters are copied into the output
folder as `posters/<imdb_id><ext>`, in a sibling folder that replaces the output only
when complete (outdir.building).

A poster path must stay inside the local folder (`dir`) once resolved: `../`, an
absolute path elsewhere or a symlink leading out are refused, naming the CSV line and
the path. Otherwise a labels table from an untrusted dump could copy any file the user
can read (~/.ssh/id_rsa, /etc/passwd) into the data set, and from there into a DVC
remote. A table with no data row is refused too: an empty data set is a broken export.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd

from postergenre.configs import LocalSourceConfig
from postergenre.data.labels import (
    LABEL_COLUMNS,
    LABELS_FILE,
    POSTERS_DIR,
    REQUIRED_COLUMNS,
    read_csv_text,
    write_table,
)
from postergenre.genres import join_genres, parse_genres, unknown_genres
from postergenre.progress import track
from postergenre.sources.outdir import building
from postergenre.validation.frame import record_lines

_IMDB_ID = re.compile(r"tt[0-9]{7,}")  # fullmatch; [0-9]: \d takes any Unicode digit
MAX_LISTED = 10  # bad rows named per problem in the error


def poster_source(base: Path, root: Path, cell: str) -> Path | None:
    """The file a `poster` cell names (relative to `base`), resolved; None when it leads
    out of `root` (already resolved), by `..`, an absolute path or a symlink."""
    resolved = (base / cell).resolve()
    return resolved if resolved.is_relative_to(root) else None


def _check_rows(frame: pd.DataFrame, base: Path, csv: Path, root: Path) -> list[str]:
    """Every problem with the table, one line each (CSV line numbers, 1 = header)."""
    problems: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    # The line each record starts on as an editor shows it (a quoted title may span lines).
    lines_of = record_lines(csv, len(frame))
    for i, row in enumerate(frame.itertuples(index=False)):
        line = lines_of[i]
        imdb_id = row.imdb_id.strip()
        who = f"line {line} ({imdb_id or 'no imdb_id'})"
        if not _IMDB_ID.fullmatch(imdb_id):
            problems.setdefault("bad imdb_id", []).append(f"{who}: {row.imdb_id!r}")
        elif imdb_id in seen:
            problems.setdefault("duplicate imdb_id", []).append(
                f"{who}: also on line {seen[imdb_id]}")
        else:
            seen[imdb_id] = line
        genres = parse_genres(row.genres)
        unknown = unknown_genres(genres)
        if unknown:
            problems.setdefault("unknown genre", []).append(f"{who}: {', '.join(unknown)}")
        elif not genres:
            problems.setdefault("no genre", []).append(who)
        poster = row.poster.strip()
        if not poster:
            problems.setdefault("empty poster path", []).append(who)
        elif "\0" in poster:  # no file name holds one (and the OS refuses it)
            problems.setdefault("NUL character in poster path", []).append(
                f"{who}: {poster!r}")
        elif poster_source(base, root, poster) is None:
            problems.setdefault(f"poster path outside the local folder {root}", []).append(
                f"{who}: {poster}")
        elif not (base / poster).is_file():
            problems.setdefault("poster not found", []).append(f"{who}: {base / poster}")
    lines = []
    for what, offenders in problems.items():
        more = len(offenders) - MAX_LISTED
        listed = "; ".join(offenders[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")
        lines.append(f"{csv}: {what} in {len(offenders)} row(s): {listed}")
    return lines


def ingest_local(out_dir: str | os.PathLike[str], config: LocalSourceConfig) -> dict:
    """Check `config.labels_csv` (default `config.dir/labels.csv`), then copy it and its
    posters into `out_dir` (replaced as a whole once the copy is complete)."""
    if not config.dir:
        raise ValueError("the local source needs a poster folder: set ingest.local.dir "
                         "(--local-dir) to a folder holding labels.csv and the posters")
    folder = Path(config.dir)
    csv = Path(config.labels_csv) if config.labels_csv else folder / LABELS_FILE
    if not csv.is_file():
        raise FileNotFoundError(f"labels CSV not found: {csv}")
    frame = read_csv_text(csv)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv}: missing column(s) {', '.join(missing)} (need "
                         f"{', '.join(REQUIRED_COLUMNS)}; see docs/real-posters.md)")
    if frame.empty:
        raise ValueError(f"{csv}: no data rows (only a header): nothing to ingest")
    # Every row is checked before anything is written: a bad table leaves `out_dir` alone.
    root = folder.resolve()
    problems = _check_rows(frame, csv.parent, csv, root)
    if problems:
        raise ValueError("\n".join(problems))

    out = Path(out_dir).resolve()
    if out == csv.parent.resolve():
        raise ValueError(f"{out}: the output folder must differ from the local folder")
    rows = []
    with building(out) as tmp:
        (tmp / POSTERS_DIR).mkdir()
        for row in track(frame.to_dict("records"), "ingest local", "poster"):
            imdb_id = row["imdb_id"].strip()
            cell = row["poster"].strip()
            # The path checked above, resolved: the file copied is the file checked.
            source = poster_source(csv.parent, root, cell)
            assert source is not None  # _check_rows refused the table otherwise
            rel = f"{POSTERS_DIR}/{imdb_id}{Path(cell).suffix.lower() or '.jpg'}"
            shutil.copyfile(source, tmp / rel)
            genres = join_genres(parse_genres(row["genres"]))
            rows.append({
                "imdb_id": imdb_id, "tmdb_id": row.get("tmdb_id", ""),
                "movielens_id": row.get("movielens_id", ""), "title": row.get("title", ""),
                "poster": rel, "genres": genres,
                "source_genres": row.get("source_genres", "") or row["genres"],
            })
        write_table(pd.DataFrame(rows, columns=list(LABEL_COLUMNS)), tmp / LABELS_FILE)
    return {"source": "local", "out_dir": str(out), "labels_csv": str(csv),
            "n_posters": len(rows)}
