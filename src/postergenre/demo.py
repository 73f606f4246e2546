"""A synthetic, learnable, byte-reproducible poster data set for demos and tests.

`generate_demo(out_dir)` writes a data set in the layout of `postergenre.labels`
(`labels.csv` + `posters/<imdb_id>.jpg`) that the whole workflow can run on without
real posters: no download, no licence question, a few seconds to build.

Design
------
* **Each genre has a visual signature.** A genre owns a colour, a motif (a shape such as
  a circle, star or heart, or a texture such as stripes, bars or waves) and a place on the
  poster (a cell of a 3 x 6 layout; Documentary is a faint grid over the whole poster).
  A poster draws the signature of each of its genres, so a multi-genre poster mixes them,
  and its background is a gradient mixed from its genres' tints. Position, size, rotation,
  colour and opacity are jittered, motifs overlap, random blobs and a title block add
  clutter, and a motif is occasionally left out (a real poster does not always show all
  its genres), so the task is learnable by a small CNN at 64x64 but not trivial.
* **Genre frequencies are as unbalanced as real ones** (`GENRE_FREQUENCIES`), so class
  weighting, thresholds and per-genre metrics face the same imbalance as on real data.
* **Byte-identical output.** `data.dvc` tracks the generated folder: regenerating it with
  the same arguments must not change its md5, or DVC would see a new data version and
  every downstream stage would rerun. So all randomness comes from
  `numpy.random.default_rng([seed, i])` per poster (no clock, no `hash()`, no set order,
  no thread scheduling), OpenCV draws and encodes deterministically, and the CSV is written
  in a fixed order. Poster `i` depends only on `(seed, i, width, height)`, so a larger set
  extends a smaller one with the same seed.
* **Nothing lost on failure, no stale files.** The set is built in a sibling temporary
  folder and swapped into place only when complete; the old folder is removed after the
  swap, so a regeneration with fewer posters leaves none of the old extra posters behind,
  and a crash midway leaves the previous set untouched.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from postergenre.genres import GENRES, NUM_GENRES, join_genres
from postergenre.images import encode_jpeg
from postergenre.labels import LABEL_COLUMNS, LABELS_FILE, POSTERS_DIR, write_table
from postergenre.outdir import check_dataset_dir, sibling_tmp, swap_into_place

# Probability that a movie has each genre (independent draws), close to the genre shares of
# MovieLens/IMDb posters, so the demo is as unbalanced as real data. A movie that draws no
# genre gets one drawn in proportion to these numbers.
GENRE_FREQUENCIES: dict[str, float] = {
    "Drama": 0.48,
    "Comedy": 0.33,
    "Thriller": 0.20,
    "Romance": 0.16,
    "Action": 0.15,
    "Crime": 0.12,
    "Horror": 0.10,
    "Adventure": 0.09,
    "Sci-Fi": 0.07,
    "Mystery": 0.06,
    "Fantasy": 0.06,
    "Documentary": 0.06,
    "Family": 0.05,
    "Animation": 0.04,
    "War": 0.03,
    "Music": 0.03,
    "History": 0.03,
    "Musical": 0.02,
    "Western": 0.015,
}

# Fake IMDb ids (tt9000000 + i): clearly synthetic, yet in the format every stage validates.
DEMO_ID_BASE = 9_000_000
JPEG_QUALITY = 90
MIN_SIZE = 32

# Per genre: RGB colour, motif, and the centre of its place as fractions of (width, height).
# Colours are spread over hue and brightness, and neighbouring cells get unlike colours and
# unlike motifs, so that 19 signatures stay distinguishable after a resize to 64x64.
_SIGNATURES: dict[str, tuple[tuple[int, int, int], str, tuple[float, float]]] = {
    "Adventure": ((50, 170, 50), "triangle", (0.22, 0.18)),
    "Sci-Fi": ((0, 225, 255), "hexagon", (0.50, 0.18)),
    "Fantasy": ((150, 90, 255), "star", (0.78, 0.18)),
    "Drama": ((120, 40, 160), "hstripes", (0.22, 0.32)),
    "Mystery": ((30, 80, 70), "ring", (0.50, 0.32)),
    "Horror": ((130, 0, 10), "zigzag", (0.78, 0.32)),
    "Action": ((235, 70, 30), "diagonal", (0.22, 0.46)),
    "History": ((150, 100, 50), "square", (0.50, 0.46)),
    "Animation": ((235, 30, 220), "dots", (0.78, 0.46)),
    "Thriller": ((15, 15, 20), "xcross", (0.22, 0.60)),
    "Music": ((170, 240, 40), "wave", (0.50, 0.60)),
    "Comedy": ((250, 225, 30), "circle", (0.78, 0.60)),
    "Crime": ((25, 35, 130), "vbars", (0.22, 0.74)),
    "Romance": ((250, 130, 170), "heart", (0.50, 0.74)),
    "Family": ((110, 190, 250), "house", (0.78, 0.74)),
    "War": ((110, 110, 40), "plus", (0.22, 0.88)),
    "Western": ((215, 170, 110), "halfdisc", (0.50, 0.88)),
    "Musical": ((255, 150, 0), "diamond", (0.78, 0.88)),
    "Documentary": ((200, 200, 200), "grid", (0.50, 0.50)),
}

# Jitter of a motif: position (fraction of width/height), size factor, rotation (radians),
# colour (sd, 0-255), opacity; and how often a genre's motif is left out of its poster.
# Position jitter is large on purpose: a model must find a motif near its place (what a CNN
# does well), not read fixed pixels (what a linear model on raw pixels would do).
_POS_JITTER = 0.09
_SCALE_RANGE = (0.7, 1.35)
_ROTATION = np.pi / 4
_COLOUR_SD = 20.0
_ALPHA_RANGE = (0.6, 1.0)
_DROP_MOTIF = 0.08
# Clutter: 0-3 blobs of random colour behind the motifs, like the faces and props of a real
# poster; they carry no genre signal.
_MAX_CLUTTER = 3

# cv2 drawing with sub-pixel precision: coordinates are fixed point with this many bits.
_SHIFT = 4
_ONE = 1 << _SHIFT

_FREQ = np.array([GENRE_FREQUENCIES[g] for g in GENRES], dtype=np.float64)
_COLOURS = np.array([_SIGNATURES[g][0] for g in GENRES], dtype=np.float32)
# Background tints: a genre's colour pulled towards a grey of the opposite brightness, so the
# background carries a weak hint of the genres while the motif, drawn in the full colour,
# stands out against its own genre's tint (a brown motif on a brown background would vanish).
_LUMA = _COLOURS @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
_TINTS = 0.4 * _COLOURS + 0.6 * np.clip(230.0 - _LUMA, 60.0, 170.0)[:, None]
# Draw the most frequent genres first, so a rare genre's motif lands on top and stays visible.
_DRAW_ORDER = np.argsort(-_FREQ, kind="stable")


def _fixed(values: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> the int32 fixed-point points cv2 wants with `_SHIFT`."""
    return np.round(np.asarray(values, dtype=np.float64) * _ONE).astype(np.int32)


def _polygon(cx: float, cy: float, radii: np.ndarray, angles: np.ndarray) -> np.ndarray:
    points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return _fixed(points).reshape(-1, 1, 2)


def _regular(cx: float, cy: float, r: float, rot: float, sides: int, start: float) -> np.ndarray:
    angles = start + rot + np.arange(sides) * (2 * np.pi / sides)
    return _polygon(cx, cy, np.full(sides, r), angles)


def _fill(mask: np.ndarray, points: np.ndarray) -> None:
    cv2.fillPoly(mask, [points], 255, cv2.LINE_AA, _SHIFT)


def _line(mask: np.ndarray, p: tuple[float, float], q: tuple[float, float], thick: int) -> None:
    a, b = _fixed(np.array(p)), _fixed(np.array(q))
    cv2.line(mask, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, thick, cv2.LINE_AA, _SHIFT)


def _circle(mask: np.ndarray, cx: float, cy: float, r: float, thick: int) -> None:
    c = _fixed(np.array([cx, cy]))
    cv2.circle(mask, (int(c[0]), int(c[1])), int(round(r * _ONE)), 255, thick, cv2.LINE_AA, _SHIFT)


def _motif_mask(
    kind: str,
    cx: float,
    cy: float,
    r: float,
    rot: float,
    rng: np.random.Generator,
    width: int,
    height: int,
) -> np.ndarray:
    """A uint8 coverage mask (0-255) of one motif centred at (cx, cy) with size r (px)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    thin = max(1, round(r / 6))
    if kind == "circle":
        _circle(mask, cx, cy, r, cv2.FILLED)
    elif kind == "ring":
        _circle(mask, cx, cy, r, max(2, round(r / 3.5)))
    elif kind == "triangle":
        _fill(mask, _regular(cx, cy, 1.15 * r, rot, 3, -np.pi / 2))
    elif kind == "square":
        _fill(mask, _regular(cx, cy, 1.1 * r, rot, 4, np.pi / 4))
    elif kind == "diamond":
        # A tall rhombus: unlike the square, its aspect survives any rotation jitter.
        angles = rot + np.arange(4) * (np.pi / 2)
        _fill(mask, _polygon(cx, cy, np.array([1.3 * r, 0.6 * r] * 2), angles))
    elif kind == "hexagon":
        _fill(mask, _regular(cx, cy, r, rot, 6, 0.0))
    elif kind == "star":
        angles = -np.pi / 2 + rot + np.arange(10) * (np.pi / 5)
        _fill(mask, _polygon(cx, cy, np.array([1.2 * r, 0.5 * r] * 5), angles))
    elif kind == "heart":
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        hx = 16 * np.sin(t) ** 3
        hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        c, s = np.cos(rot / 2), np.sin(rot / 2)
        pts = np.stack([cx + r / 15 * (c * hx - s * hy), cy + r / 15 * (s * hx + c * hy)], 1)
        _fill(mask, _fixed(pts).reshape(-1, 1, 2))
    elif kind == "house":
        c, s = np.cos(rot / 3), np.sin(rot / 3)
        shape = np.array([[-0.8, 1.0], [0.8, 1.0], [0.8, -0.1], [0.0, -1.0], [-0.8, -0.1]])
        pts = np.stack(
            [
                cx + r * (c * shape[:, 0] - s * shape[:, 1]),
                cy + r * (s * shape[:, 0] + c * shape[:, 1]),
            ],
            1,
        )
        _fill(mask, _fixed(pts).reshape(-1, 1, 2))
    elif kind == "halfdisc":
        # A setting sun: the upper half of a disc, tilted a little.
        c = _fixed(np.array([cx, cy + 0.4 * r]))
        axes = (int(round(1.2 * r * _ONE)),) * 2
        cv2.ellipse(
            mask,
            (int(c[0]), int(c[1])),
            axes,
            float(np.degrees(rot) / 3),
            180,
            360,
            255,
            cv2.FILLED,
            cv2.LINE_AA,
            _SHIFT,
        )
    elif kind in ("xcross", "plus"):
        base = np.pi / 4 if kind == "xcross" else 0.0
        thick = max(2, round(r / 3))
        for k in range(2):
            a = base + rot / 3 + k * np.pi / 2
            dx, dy = 1.2 * r * np.cos(a), 1.2 * r * np.sin(a)
            _line(mask, (cx - dx, cy - dy), (cx + dx, cy + dy), thick)
    else:
        # Textures fill a box of half-size (1.6 r, 0.9 r) around the centre.
        hw, hh = 1.6 * r, 0.9 * r
        x0, x1, y0, y1 = cx - hw, cx + hw, cy - hh, cy + hh
        if kind == "hstripes":
            step = max(3.0, r / 2.5)
            for y in np.arange(y0 + rng.uniform(0, step), y1, step):
                _line(mask, (x0, y), (x1, y), thin)
        elif kind == "vbars":
            step = max(3.0, r / 2.5)
            for x in np.arange(x0 + rng.uniform(0, step), x1, step):
                _line(mask, (x, y0), (x, y1), max(2, thin))
        elif kind == "diagonal":
            step = max(4.0, r / 1.8)
            slope = np.tan(np.pi / 4 + rot / 3)
            for x in np.arange(x0 - 2 * hh * slope + rng.uniform(0, step), x1, step):
                _line(mask, (x, y1), (x + 2 * hh * slope, y0), max(2, thin))
        elif kind == "dots":
            step = max(4.0, r / 1.6)
            for y in np.arange(y0 + step / 2, y1, step):
                for x in np.arange(x0 + step / 2, x1, step):
                    _circle(mask, x, y, max(1.2, step / 3.2), cv2.FILLED)
        elif kind in ("zigzag", "wave"):
            xs = np.linspace(x0, x1, 9 if kind == "zigzag" else 24)
            phase = rng.uniform(0, 2 * np.pi)
            for y in np.linspace(y0 + hh / 3, y1 - hh / 3, 2):
                if kind == "zigzag":
                    ys = y + np.where(np.arange(xs.size) % 2 == 0, -1.0, 1.0) * hh / 3
                else:
                    ys = y + np.sin(phase + (xs - x0) / (hw / 1.5)) * hh / 3
                pts = _fixed(np.stack([xs, ys], 1)).reshape(-1, 1, 2)
                cv2.polylines(mask, [pts], False, 255, max(2, thin), cv2.LINE_AA, _SHIFT)
        elif kind == "grid":
            # Documentary: a thin grid over the whole poster (layout, not a spot).
            step = rng.uniform(0.16, 0.22) * width
            thick = 1
            for x in np.arange(rng.uniform(0, step), width, step):
                _line(mask, (x, 0), (x, height - 1), thick)
            for y in np.arange(rng.uniform(0, step), height, step):
                _line(mask, (0, y), (width - 1, y), thick)
            return mask
        else:  # pragma: no cover - the table above names only the kinds handled here
            raise AssertionError(f"unknown motif {kind!r}")
        box = np.zeros_like(mask)
        cv2.rectangle(
            box, (int(x0), int(y0)), (int(np.ceil(x1)), int(np.ceil(y1))), 255, cv2.FILLED
        )
        mask = cv2.min(mask, box)
    return mask


def _blend(image: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float) -> None:
    """Paint `colour` over `image` (float32 RGB, in place) where `mask` covers it."""
    weight = (mask.astype(np.float32) * (alpha / 255.0))[:, :, None]
    image += weight * (colour[None, None, :] - image)


def _background(
    rng: np.random.Generator, genres: np.ndarray, width: int, height: int
) -> np.ndarray:
    """A vertical gradient between two random mixes of the genres' tints, plus noise."""
    top = rng.dirichlet(np.ones(genres.size)) @ _TINTS[genres]
    bottom = rng.dirichlet(np.ones(genres.size)) @ _TINTS[genres]
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = (1 - t) * top.astype(np.float32) + t * bottom.astype(np.float32)
    image = np.broadcast_to(image, (height, width, 3)).copy()
    # Low-frequency blotches (a coarse random field upsampled) and fine grain: the texture of
    # a printed poster, and a reason the model must look at shapes, not single pixels.
    coarse = rng.normal(0.0, 14.0, size=(6, 4, 3)).astype(np.float32)
    image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0.0, 5.0, size=image.shape).astype(np.float32)
    return image


def _title_block(image: np.ndarray, rng: np.random.Generator, width: int, height: int) -> None:
    """A neutral title bar at the top with a few 'words': poster-like clutter, no signal."""
    bar = np.zeros((height, width), dtype=np.uint8)
    y1 = int(round(height * rng.uniform(0.06, 0.1)))
    bar[:y1] = 255
    shade = float(rng.choice([25.0, 235.0]))
    _blend(image, bar, np.full(3, shade, dtype=np.float32), 0.85)
    words = np.zeros_like(bar)
    x = width * rng.uniform(0.08, 0.2)
    yc = y1 / 2
    while True:
        w = width * rng.uniform(0.08, 0.22)
        if x + w > width * 0.92:
            break
        cv2.rectangle(words, (int(x), int(yc - 1)), (int(x + w), int(yc + 1)), 255, cv2.FILLED)
        x += w + width * 0.04
    _blend(image, words, np.full(3, 255.0 - shade, dtype=np.float32), 0.9)


def _draw_poster(
    rng: np.random.Generator, present: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Render one poster (uint8 RGB, height x width x 3) for the genre flags `present`."""
    genres = np.flatnonzero(present)
    image = _background(rng, genres, width, height)
    for _ in range(rng.integers(0, _MAX_CLUTTER + 1)):
        blob = np.zeros((height, width), dtype=np.uint8)
        centre = _fixed(rng.uniform(0, 1, size=2) * (width, height))
        axes = _fixed(rng.uniform(0.08, 0.25, size=2) * width)
        cv2.ellipse(
            blob,
            (int(centre[0]), int(centre[1])),
            (int(axes[0]), int(axes[1])),
            float(rng.uniform(0, 180)),
            0,
            360,
            255,
            cv2.FILLED,
            cv2.LINE_AA,
            _SHIFT,
        )
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        _blend(image, blob, colour, float(rng.uniform(0.3, 0.7)))
    base = 0.13 * width
    for g in _DRAW_ORDER:
        if not present[g]:
            continue
        name = GENRES[g]
        # Every jitter is drawn even when the motif is then dropped, so the random stream,
        # and with it the rest of the poster, does not depend on that coin.
        dx, dy = rng.uniform(-_POS_JITTER, _POS_JITTER, size=2)
        scale = rng.uniform(*_SCALE_RANGE)
        rot = rng.uniform(-_ROTATION, _ROTATION)
        colour = np.clip(_COLOURS[g] + rng.normal(0.0, _COLOUR_SD, size=3), 0, 255)
        alpha = rng.uniform(*_ALPHA_RANGE)
        texture_rng = np.random.default_rng(rng.integers(0, 2**63))
        if rng.random() < _DROP_MOTIF:
            continue
        _, kind, (fx, fy) = _SIGNATURES[name]
        cx, cy = (fx + dx) * width, (fy + dy) * height
        mask = _motif_mask(kind, cx, cy, base * scale, rot, texture_rng, width, height)
        # The whole-poster Documentary grid is faint so it does not hide the other motifs.
        _blend(image, mask, colour.astype(np.float32), alpha * (0.6 if kind == "grid" else 1))
    _title_block(image, rng, width, height)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _draw_genres(rng: np.random.Generator) -> np.ndarray:
    """Independent Bernoulli draws per genre; an empty draw gets one genre by frequency."""
    present = rng.random(NUM_GENRES) < _FREQ
    if not present.any():
        present[rng.choice(NUM_GENRES, p=_FREQ / _FREQ.sum())] = True
    return present


def _validate(n_posters: int, seed: int, width: int, height: int) -> None:
    for name, value in (
        ("n_posters", n_posters),
        ("seed", seed),
        ("width", width),
        ("height", height),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if n_posters < 1:
        raise ValueError(f"n_posters must be at least 1, got {n_posters}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ValueError(f"width and height must be at least {MIN_SIZE} px, got {width}x{height}")


def generate_demo(
    out_dir: str | os.PathLike[str],
    n_posters: int = 1500,
    seed: int = 0,
    width: int = 96,
    height: int = 144,
) -> dict:
    """Write a synthetic poster data set (`labels.csv` + `posters/`) to `out_dir`.

    The same arguments always give byte-identical files (see the module docstring). An
    existing `out_dir` is replaced as a whole once the new set is complete; it must hold
    nothing but `labels.csv` and `posters/`, so a wrong path never deletes other data.

    Returns a summary: `out_dir`, `n_posters`, `seed`, `size` (`{"width", "height"}`) and
    `genre_counts` (posters per genre, in vocabulary order).
    """
    _validate(n_posters, seed, width, height)
    out = Path(out_dir).resolve()
    check_dataset_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling_tmp(out)
    (tmp / POSTERS_DIR).mkdir(parents=True)
    try:
        rows: list[dict[str, str]] = []
        counts = np.zeros(NUM_GENRES, dtype=np.int64)
        for i in tqdm(range(n_posters), desc="demo posters", unit="poster", disable=None):
            rng = np.random.default_rng([seed, i])
            present = _draw_genres(rng)
            counts += present
            rgb = _draw_poster(rng, present, width, height)
            imdb_id = f"tt{DEMO_ID_BASE + i:07d}"
            poster = f"{POSTERS_DIR}/{imdb_id}.jpg"
            (tmp / poster).write_bytes(encode_jpeg(rgb, JPEG_QUALITY))
            genres = join_genres(GENRES[g] for g in np.flatnonzero(present))
            rows.append(
                {
                    "imdb_id": imdb_id,
                    "tmdb_id": "",
                    "movielens_id": "",
                    "title": f"Demo poster {i + 1:04d}",
                    "poster": poster,
                    "genres": genres,
                    "source_genres": genres,
                }
            )
        write_table(pd.DataFrame(rows, columns=list(LABEL_COLUMNS)), tmp / LABELS_FILE)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "out_dir": str(out),
        "n_posters": n_posters,
        "seed": seed,
        "size": {"width": width, "height": height},
        "genre_counts": {g: int(c) for g, c in zip(GENRES, counts, strict=True)},
    }


def _check_tables() -> None:
    """The frequency table and the signatures must name exactly the 19 genres."""
    if set(GENRE_FREQUENCIES) != set(GENRES) or set(_SIGNATURES) != set(GENRES):
        raise AssertionError("GENRE_FREQUENCIES and _SIGNATURES must name the 19 genres")


_check_tables()
