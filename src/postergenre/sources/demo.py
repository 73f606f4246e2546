"""A synthetic, learnable, byte-reproducible poster data set for demos and tests.

`generate_demo(out_dir, config)` writes a data set in the layout of `postergenre.data.labels`
(`labels.csv` + `posters/<imdb_id>.jpg`) that the whole workflow can run on without
real posters: no download, no licence question, a few seconds to build.

Design
------
* **Each genre has a visual signature.** A genre owns a colour, a motif (a shape such as
  a circle, star or heart, or a texture such as stripes, bars or waves; `_MOTIFS` holds
  one small drawing function per motif) and a place on the poster (a cell of a 3 x 6
  layout; Documentary is a faint grid over the whole poster).
  A poster draws the signature of each of its genres, so a multi-genre poster mixes them,
  and its background is a gradient mixed from its genres' tints. Position, size, rotation,
  colour and opacity are jittered, motifs overlap, random blobs and a title block add
  clutter, and a motif is occasionally left out (a real poster does not always show all
  its genres), so the task is learnable by a small CNN at 64x64 but not trivial.
* **Genre frequencies are as unbalanced as real ones** (`GENRE_FREQUENCIES`), so class
  weighting, thresholds and per-genre metrics face the same imbalance as on real data.
* **Byte-identical output, on every machine.** `data.dvc` tracks the generated folder:
  regenerating it with the same `DemoSourceConfig` must not change its md5, on this
  machine or any other (x86-64 with or without AVX2/AVX-512, arm64), or DVC would see a
  new data version and every downstream stage would rerun. So:
  - all randomness comes from `numpy.random.default_rng([seed, i])` per poster (no clock,
    no `hash()`, no set order, no thread scheduling), and past the genre draws only from
    `Generator.integers` (exact integers on every platform; no `normal`, `dirichlet` or
    `uniform`, whose float results go through libm);
  - every pixel is computed with integer arithmetic in numpy: geometry in fixed point
    (1/`_UNIT` px), trigonometry from an integer table (`_COS`), shapes rasterised by exact
    integer inside-tests on `_SS` x `_SS` samples per pixel (anti-aliasing by counting),
    colour mixing and blending in integers. No OpenCV drawing, resizing or float kernel is
    used: those dispatch at run time to SIMD or Intel IPP code that rounds differently per
    CPU (the float bicubic `cv2.resize` the blotches once used gave other posters with
    `OPENCV_IPP=sse42` or `cv2.setUseOptimized(False)` than with IPP's AVX2 path, hence
    another `data.dvc` md5 on another machine);
  - the JPEG encoder is libjpeg-turbo (inside OpenCV) at a fixed quality with its default
    integer ("islow") DCT, baseline Huffman tables, no optimisation, no threads: its SIMD
    paths are bit-exact with its C code for these settings;
  - the CSV is written in a fixed order.
  Poster `i` depends only on `(seed, i, width, height)`, so a larger set extends a smaller
  one with the same seed. `docs/demo-data-md5.txt` lists the md5 of every file of the
  default set, and a test regenerates it under other CPU-dispatch and thread settings.
* **Nothing lost on failure, no stale files.** The set is built in a sibling temporary
  folder and swapped into place only when complete (`outdir.building`); the old folder is
  removed after the swap, so a regeneration with fewer posters leaves none of the old
  extra posters behind, and a crash midway leaves the previous set untouched.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from postergenre.configs import DemoSourceConfig
from postergenre.data.images import encode_jpeg
from postergenre.data.labels import LABEL_COLUMNS, LABELS_FILE, POSTERS_DIR, write_table
from postergenre.genres import GENRES, NUM_GENRES, join_genres
from postergenre.progress import track
from postergenre.sources.outdir import building

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

# Per genre: RGB colour, motif, and the centre of its place in thousandths of (width,
# height). Colours are spread over hue and brightness, and neighbouring cells get unlike
# colours and unlike motifs, so that 19 signatures stay distinguishable after a resize to
# 64x64.
_SIGNATURES: dict[str, tuple[tuple[int, int, int], str, tuple[int, int]]] = {
    "Adventure": ((50, 170, 50), "triangle", (220, 180)),
    "Sci-Fi": ((0, 225, 255), "hexagon", (500, 180)),
    "Fantasy": ((150, 90, 255), "star", (780, 180)),
    "Drama": ((120, 40, 160), "hstripes", (220, 320)),
    "Mystery": ((30, 80, 70), "ring", (500, 320)),
    "Horror": ((130, 0, 10), "zigzag", (780, 320)),
    "Action": ((235, 70, 30), "diagonal", (220, 460)),
    "History": ((150, 100, 50), "square", (500, 460)),
    "Animation": ((235, 30, 220), "dots", (780, 460)),
    "Thriller": ((15, 15, 20), "xcross", (220, 600)),
    "Music": ((170, 240, 40), "wave", (500, 600)),
    "Comedy": ((250, 225, 30), "circle", (780, 600)),
    "Crime": ((25, 35, 130), "vbars", (220, 740)),
    "Romance": ((250, 130, 170), "heart", (500, 740)),
    "Family": ((110, 190, 250), "house", (780, 740)),
    "War": ((110, 110, 40), "plus", (220, 880)),
    "Western": ((215, 170, 110), "halfdisc", (500, 880)),
    "Musical": ((255, 150, 0), "diamond", (780, 880)),
    "Documentary": ((200, 200, 200), "grid", (500, 500)),
}

# Jitter of a motif, all integers: position (thousandths of width/height), size (percent of
# the base size), rotation (degrees), colour (+-, 0-255 scale; uniform, sd about 20),
# opacity (256ths); and how often (percent) a genre's motif is left out of its poster.
# Position jitter is large on purpose: a model must find a motif near its place (what a CNN
# does well), not read fixed pixels (what a linear model on raw pixels would do).
_POS_JITTER = 90
_SCALE_RANGE = (70, 135)
_ROTATION = 45
_COLOUR_JITTER = 34
_ALPHA_RANGE = (154, 256)
_DROP_MOTIF = 8
# Clutter: 0-3 blobs of random colour behind the motifs, like the faces and props of a real
# poster; they carry no genre signal.
_MAX_CLUTTER = 3

# Integer geometry: coordinates are in units of 1/_UNIT pixel (pixel p spans units
# [p * _UNIT, (p + 1) * _UNIT)), and a shape's coverage of a pixel is the share of its
# _SS x _SS sample points (at the odd units p * _UNIT + 1, 3, 5, ...) that lie inside it.
_SS = 4
_UNIT = 2 * _SS
_FULL = _SS * _SS  # samples per pixel
# Trigonometry in fixed point: round(2**14 * cos(k degrees)), k = 0..359. No value is near a
# rounding tie (a test checks the margin), so every libm gives the same table.
_TRIG_BITS = 14
_COS = np.array([round(math.cos(math.radians(k)) * (1 << _TRIG_BITS)) for k in range(360)],
                dtype=np.int64)

_FREQ = np.array([GENRE_FREQUENCIES[g] for g in GENRES], dtype=np.float64)
_COLOURS = np.array([_SIGNATURES[g][0] for g in GENRES], dtype=np.int64)
# Background tints: a genre's colour pulled towards a grey of the opposite brightness, so the
# background carries a weak hint of the genres while the motif, drawn in the full colour,
# stands out against its own genre's tint (a brown motif on a brown background would vanish).
_LUMA = (_COLOURS @ np.array([299, 587, 114], dtype=np.int64) + 500) // 1000
_TINTS = (4 * _COLOURS + 6 * np.clip(230 - _LUMA, 60, 170)[:, None] + 5) // 10
# Draw the most frequent genres first, so a rare genre's motif lands on top and stays visible.
_DRAW_ORDER = np.argsort(-_FREQ, kind="stable")

Point = tuple[int, int]

# Shapes are grown by half a pixel and strokes by a pixel, the soft edge OpenCV's
# anti-aliased drawing gave them before (thin textures would otherwise be faint at 64x64).
_PAD = _UNIT // 2


def _half(width: int) -> int:
    """Half-width (units) of a stroke `width` units wide, grown by a pixel."""
    return (width + _UNIT) // 2


def _div(a: int, b: int) -> int:
    """a / b rounded to the nearest integer (halves up), for Python ints and b > 0."""
    return (2 * a + b) // (2 * b)


def _cos(degrees: int) -> int:
    return int(_COS[degrees % 360])


def _sin(degrees: int) -> int:
    return int(_COS[(degrees - 90) % 360])


def _polar(cx: int, cy: int, radius: int, degrees: int) -> Point:
    """The point at `radius` units from (cx, cy) in direction `degrees` (y points down)."""
    one = 1 << _TRIG_BITS
    return cx + _div(radius * _cos(degrees), one), cy + _div(radius * _sin(degrees), one)


def _place(cx: int, cy: int, points: list[Point], degrees: int, denominator: int) -> list[Point]:
    """`points / denominator` rotated by `degrees` and moved to (cx, cy)."""
    c, s, scale = _cos(degrees), _sin(degrees), denominator << _TRIG_BITS
    return [(cx + _div(x * c - y * s, scale), cy + _div(x * s + y * c, scale)) for x, y in points]


@dataclass(frozen=True)
class _Samples:
    """The sample points of a window of whole pixels of the poster, in units: `xs` is a row
    (1, nx * _SS), `ys` a column (ny * _SS, 1), so an inside-test broadcasts to the window."""

    px0: int
    py0: int
    nx: int
    ny: int

    @staticmethod
    def window(width: int, height: int, x0: int, x1: int, y0: int, y1: int) -> _Samples | None:
        """The pixels that meet the box [x0, x1] x [y0, y1] (units), cut to the poster."""
        px0, px1 = max(0, x0 // _UNIT), min(width, x1 // _UNIT + 1)
        py0, py1 = max(0, y0 // _UNIT), min(height, y1 // _UNIT + 1)
        if px0 >= px1 or py0 >= py1:
            return None
        return _Samples(px0, py0, px1 - px0, py1 - py0)

    @functools.cached_property
    def xs(self) -> np.ndarray:
        return (self.px0 * _UNIT + 1 + 2 * np.arange(self.nx * _SS, dtype=np.int64))[None, :]

    @functools.cached_property
    def ys(self) -> np.ndarray:
        return (self.py0 * _UNIT + 1 + 2 * np.arange(self.ny * _SS, dtype=np.int64))[:, None]

    def empty(self) -> np.ndarray:
        return np.zeros((self.ny * _SS, self.nx * _SS), dtype=bool)

    def span(self, y0: int, y1: int, x0: int, x1: int) -> tuple[slice, slice]:
        """The rows and columns of the samples in [x0, x1] x [y0, y1] (may be empty)."""
        first_y, first_x = self.py0 * _UNIT + 1, self.px0 * _UNIT + 1
        rows = slice(max(0, -(-(y0 - first_y) // 2)), max(0, (y1 - first_y) // 2 + 1))
        cols = slice(max(0, -(-(x0 - first_x) // 2)), max(0, (x1 - first_x) // 2 + 1))
        return rows, cols

    def paste(self, mask: np.ndarray, inside: np.ndarray) -> None:
        """Write the coverage (0-255) of the sample test `inside` into the window of `mask`."""
        inside = np.broadcast_to(inside, (self.ny * _SS, self.nx * _SS))
        counts = inside.reshape(self.ny, _SS, self.nx, _SS).sum(axis=(1, 3), dtype=np.int64)
        mask[self.py0 : self.py0 + self.ny, self.px0 : self.px0 + self.nx] = (
            (counts * 255 + _FULL // 2) // _FULL
        ).astype(np.uint8)


# Exact integer inside-tests of the shapes every motif is made of (all lengths in units).


def _disc(s: _Samples, cx: int, cy: int, r: int) -> np.ndarray:
    return (s.xs - cx) ** 2 + (s.ys - cy) ** 2 <= r * r


def _polygon(s: _Samples, points: list[Point]) -> np.ndarray:
    """Even-odd rule: a sample is inside when a ray to its right crosses an odd number of
    edges; each edge is tested on the rows it spans only (half-open in y)."""
    ys = s.ys[:, 0]
    inside = s.empty()
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        if y1 == y2:
            continue
        if y1 > y2:
            x1, y1, x2, y2 = x2, y2, x1, y1
        r0, r1 = (int(i) for i in np.searchsorted(ys, [y1, y2], side="left"))
        if r0 < r1:
            inside[r0:r1] ^= (s.xs - x1) * (y2 - y1) < (s.ys[r0:r1] - y1) * (x2 - x1)
    return inside


def _add_capsule(inside: np.ndarray, s: _Samples, a: Point, b: Point, half: int) -> None:
    """Add to `inside` a stroke from a to b, `half` units either side, with round caps
    (only the samples in the stroke's box are tested)."""
    (ax, ay), (bx, by) = a, b
    rows, cols = s.span(min(ay, by) - half, max(ay, by) + half, min(ax, bx) - half,
                        max(ax, bx) + half)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return
    xs, ys = s.xs[:, cols], s.ys[rows]
    px, py = xs - ax, ys - ay
    near = np.minimum(px * px + py * py, (xs - bx) ** 2 + (ys - by) ** 2) <= half * half
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    if length2 > 0:
        along = px * dx + py * dy
        across = px * dy - py * dx
        near |= (along >= 0) & (along <= length2) & (across * across <= half * half * length2)
    inside[rows, cols] |= near


def _polyline(s: _Samples, points: list[Point], half: int) -> np.ndarray:
    inside = s.empty()
    for a, b in zip(points, points[1:], strict=False):
        _add_capsule(inside, s, a, b, half)
    return inside


def _box(s: _Samples, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    return (s.xs >= x0) & (s.xs <= x1) & (s.ys >= y0) & (s.ys <= y1)


@dataclass(frozen=True)
class _Motif:
    """Where one motif goes: centre (cx, cy) and size r in units, rotation in degrees, and
    the poster's size in pixels."""

    cx: int
    cy: int
    r: int
    rot: int
    width: int
    height: int

    @property
    def thin(self) -> int:
        """Line width of the textures (units), in proportion to the motif's size."""
        return max(_UNIT, self.r // 6)

    # Textures fill a box of half-size (1.6 r, 0.9 r) around the centre.
    @property
    def hw(self) -> int:
        return 16 * self.r // 10

    @property
    def hh(self) -> int:
        return 9 * self.r // 10

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, x1, y0, y1) of the texture box."""
        return self.cx - self.hw, self.cx + self.hw, self.cy - self.hh, self.cy + self.hh


# A motif returns which sample points of the window `s` it covers; `rng` is the motif's own
# generator, so a texture's random phase touches nothing else.
MotifDrawer = Callable[[_Samples, _Motif, np.random.Generator], np.ndarray]


def _regular(m: _Motif, radius: int, sides: int, start: int) -> list[Point]:
    return [_polar(m.cx, m.cy, radius + _PAD, start + m.rot + k * 360 // sides)
            for k in range(sides)]


def _circle_motif(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    return _disc(s, m.cx, m.cy, m.r + _PAD)


def _ring(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    half = _half(max(2 * _UNIT, 10 * m.r // 35))
    d2 = (s.xs - m.cx) ** 2 + (s.ys - m.cy) ** 2
    return (d2 >= (m.r - half) ** 2) & (d2 <= (m.r + half) ** 2)


def _triangle(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    return _polygon(s, _regular(m, 115 * m.r // 100, 3, -90))


def _square(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    return _polygon(s, _regular(m, 11 * m.r // 10, 4, 45))


def _diamond(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    # A tall rhombus: unlike the square, its aspect survives any rotation jitter.
    radii = (13 * m.r // 10 + _PAD, 6 * m.r // 10 + _PAD)
    return _polygon(s, [_polar(m.cx, m.cy, radii[k % 2], m.rot + 90 * k) for k in range(4)])


def _hexagon(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    return _polygon(s, _regular(m, m.r, 6, 0))


def _star(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    radii = (12 * m.r // 10 + _PAD, 5 * m.r // 10 + _PAD)
    return _polygon(s, [_polar(m.cx, m.cy, radii[k % 2], -90 + m.rot + 36 * k)
                        for k in range(10)])


def _heart_outline() -> list[Point]:
    """The heart curve x = 16 sin^3 t, y = -(13 cos t - 5 cos 2t - 2 cos 3t - cos 4t) at
    t = 0, 9, ..., 351 degrees, in 2**-14 of its units (from the integer trig table)."""
    one = 1 << _TRIG_BITS
    points = []
    for t in range(0, 360, 9):
        x = _div(16 * _sin(t) ** 3, one * one)
        y = -(13 * _cos(t) - 5 * _cos(2 * t) - 2 * _cos(3 * t) - _cos(4 * t))
        points.append((x, y))
    return points


_HEART = _heart_outline()


def _heart(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    # The curve spans about 32 x 29 of its units: r / 15 units of the poster each.
    points = [(x * (m.r + _PAD), y * (m.r + _PAD)) for x, y in _HEART]
    return _polygon(s, _place(m.cx, m.cy, points, m.rot // 2, 15 << _TRIG_BITS))


_HOUSE = [(-8, 10), (8, 10), (8, -1), (0, -10), (-8, -1)]  # tenths of r


def _house(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    points = [(x * (m.r + _PAD), y * (m.r + _PAD)) for x, y in _HOUSE]
    return _polygon(s, _place(m.cx, m.cy, points, m.rot // 3, 10))


def _halfdisc(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    # A setting sun: the upper half of a disc, tilted a little.
    cy = m.cy + 4 * m.r // 10
    a = m.rot // 3
    up = (s.ys - cy) * _cos(a) - (s.xs - m.cx) * _sin(a) <= 0
    return _disc(s, m.cx, cy, 12 * m.r // 10 + _PAD) & up


def _cross(s: _Samples, m: _Motif, rng: np.random.Generator, base: int) -> np.ndarray:
    """Two bars at right angles, starting from angle `base` (0: a plus, 45: an x)."""
    half = _half(max(2 * _UNIT, m.r // 3))
    inside = s.empty()
    for k in range(2):
        dx, dy = _polar(0, 0, 12 * m.r // 10, base + m.rot // 3 + 90 * k)
        _add_capsule(inside, s, (m.cx - dx, m.cy - dy), (m.cx + dx, m.cy + dy), half)
    return inside


def _texture(draw: MotifDrawer) -> MotifDrawer:
    """A texture drawer cut to the motif's box, so it stays a patch at the genre's place."""

    def draw_in_box(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
        return draw(s, m, rng) & _box(s, *m.box)

    return draw_in_box


def _hstripes(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    _, _, y0, y1 = m.box
    step = max(3 * _UNIT, 2 * m.r // 5)
    inside = s.empty()
    for y in range(y0 + int(rng.integers(0, step)), y1, step):
        inside |= np.abs(s.ys - y) <= _half(m.thin)
    return inside


def _vbars(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    x0, x1, _, _ = m.box
    step = max(3 * _UNIT, 2 * m.r // 5)
    inside = s.empty()
    for x in range(x0 + int(rng.integers(0, step)), x1, step):
        inside |= np.abs(s.xs - x) <= _half(max(2 * _UNIT, m.thin))
    return inside


def _diagonal(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    x0, x1, y0, y1 = m.box
    step = max(4 * _UNIT, 10 * m.r // 18)
    a = 45 + m.rot // 3
    slant = _div(2 * m.hh * _sin(a), _cos(a))  # a bar's bottom-to-top x offset
    half = _half(max(2 * _UNIT, m.thin))
    inside = s.empty()
    for x in range(x0 - slant + int(rng.integers(0, step)), x1, step):
        _add_capsule(inside, s, (x, y1), (x + slant, y0), half)
    return inside


def _dots(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    x0, x1, y0, y1 = m.box
    step = max(4 * _UNIT, 10 * m.r // 16)
    radius = max(12 * _UNIT // 10, 10 * step // 32) + _PAD
    inside = s.empty()
    for y in range(y0 + step // 2, y1, step):
        for x in range(x0 + step // 2, x1, step):
            rows, cols = s.span(y - radius, y + radius, x - radius, x + radius)
            inside[rows, cols] |= (s.xs[:, cols] - x) ** 2 + (s.ys[rows] - y) ** 2 <= radius**2
    return inside


def _two_lines(s: _Samples, m: _Motif, xs: list[int], offsets: list[int]) -> np.ndarray:
    """Two open polylines across the box, a third of its height in from each edge."""
    _, _, y0, y1 = m.box
    half = _half(max(2 * _UNIT, m.thin))
    inside = s.empty()
    for y in (y0 + m.hh // 3, y1 - m.hh // 3):
        inside |= _polyline(s, [(x, y + dy) for x, dy in zip(xs, offsets, strict=True)], half)
    return inside


def _zigzag(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    x0, x1, _, _ = m.box
    xs = [x0 + k * (x1 - x0) // 8 for k in range(9)]
    return _two_lines(s, m, xs, [(1 if k % 2 else -1) * (m.hh // 3) for k in range(9)])


def _wave(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    # 24 points over the box, about 172 degrees of a sine wave with a random phase.
    x0, x1, _, _ = m.box
    xs = [x0 + k * (x1 - x0) // 23 for k in range(24)]
    phase = int(rng.integers(0, 360))
    amplitude = m.hh // 3
    offsets = [_div(_sin(phase + k * 172 // 23) * amplitude, 1 << _TRIG_BITS) for k in range(24)]
    return _two_lines(s, m, xs, offsets)


def _grid(s: _Samples, m: _Motif, rng: np.random.Generator) -> np.ndarray:
    # Documentary: a thin grid over the whole poster (layout, not a spot), so it ignores
    # the motif's place and size.
    step = int(rng.integers(16, 23)) * m.width * _UNIT // 100
    inside = s.empty()
    for x in range(int(rng.integers(0, step)), m.width * _UNIT, step):
        inside |= np.abs(s.xs - x) <= 3 * _UNIT // 4  # 1.5 px wide
    for y in range(int(rng.integers(0, step)), m.height * _UNIT, step):
        inside |= np.abs(s.ys - y) <= 3 * _UNIT // 4
    return inside


# Every motif a genre signature may name, with the function that draws it.
_MOTIFS: dict[str, MotifDrawer] = {
    "circle": _circle_motif,
    "ring": _ring,
    "triangle": _triangle,
    "square": _square,
    "diamond": _diamond,
    "hexagon": _hexagon,
    "star": _star,
    "heart": _heart,
    "house": _house,
    "halfdisc": _halfdisc,
    "xcross": functools.partial(_cross, base=45),
    "plus": functools.partial(_cross, base=0),
    "hstripes": _texture(_hstripes),
    "vbars": _texture(_vbars),
    "diagonal": _texture(_diagonal),
    "dots": _texture(_dots),
    "zigzag": _texture(_zigzag),
    "wave": _texture(_wave),
    "grid": _grid,
}


def _motif_mask(
    kind: str,
    cx: int,
    cy: int,
    r: int,
    rot: int,
    rng: np.random.Generator,
    width: int,
    height: int,
) -> np.ndarray:
    """A uint8 coverage mask (0-255) of one motif centred at (cx, cy) with size r (both in
    units of 1/_UNIT px), rotated by `rot` degrees."""
    mask = np.zeros((height, width), dtype=np.uint8)
    m = _Motif(int(cx), int(cy), int(r), int(rot), width, height)
    s: _Samples | None
    if kind == "grid":
        s = _Samples(0, 0, width, height)
    else:  # every motif stays within 1.6 r (+ a line width) of its centre
        reach = 2 * m.r + 2 * _UNIT
        s = _Samples.window(width, height, m.cx - reach, m.cx + reach, m.cy - reach,
                            m.cy + reach)
    if s is not None:
        s.paste(mask, _MOTIFS[kind](s, m, rng))
    return mask


def _ellipse_mask(width: int, height: int, centre: Point, axes: Point, degrees: int) -> np.ndarray:
    """Coverage mask (0-255) of a filled ellipse (units) rotated by `degrees`."""
    mask = np.zeros((height, width), dtype=np.uint8)
    (cx, cy), (a, b) = centre, axes
    reach = max(a, b) + _UNIT
    s = _Samples.window(width, height, cx - reach, cx + reach, cy - reach, cy + reach)
    if s is not None:
        c, n, one = _cos(degrees), _sin(degrees), 1 << _TRIG_BITS
        dx, dy = s.xs - cx, s.ys - cy
        # Into the ellipse's own axes, back in units (rounded), then the exact test.
        u = (dx * c + dy * n + one // 2) // one
        v = (dy * c - dx * n + one // 2) // one
        s.paste(mask, u * u * (b * b) + v * v * (a * a) <= (a * a) * (b * b))
    return mask


def _blend(image: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: int) -> None:
    """Paint `colour` over `image` (int32 RGB, in place) where `mask` (0-255) covers it, at
    opacity `alpha` (256ths), rounding halves up."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return
    window = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    weight = (mask[window].astype(np.int32) * alpha)[:, :, None]  # out of 255 * 256
    delta = np.asarray(colour, dtype=np.int32)[None, None, :] - image[window]
    image[window] += (delta * weight + 255 * 128) // (255 * 256)


def _upsample(coarse: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear upsampling of a coarse integer field (h, w, 3) to (height, width, 3), in
    integers (pixel centres mapped as by an image resize, edges replicated)."""

    def taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Source position of output pixel i, times 2 * n_out: (2 i + 1) n_in - n_out.
        pos = (2 * np.arange(n_out, dtype=np.int64) + 1) * n_in - n_out
        i0 = np.clip(pos // (2 * n_out), 0, n_in - 1)
        frac = np.clip(pos - i0 * 2 * n_out, 0, 2 * n_out)
        return i0, np.minimum(i0 + 1, n_in - 1), frac

    y0, y1, fy = taps(height, coarse.shape[0])
    x0, x1, fx = taps(width, coarse.shape[1])
    c = coarse.astype(np.int64)
    dy, dx = 2 * height, 2 * width
    rows = c[y0] * (dy - fy)[:, None, None] + c[y1] * fy[:, None, None]
    field = rows[:, x0] * (dx - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return _div_array(field, dy * dx)


def _div_array(values: np.ndarray, denominator: int) -> np.ndarray:
    return (2 * values + denominator) // (2 * denominator)


def _background(
    rng: np.random.Generator, genres: np.ndarray, width: int, height: int
) -> np.ndarray:
    """A vertical gradient between two random mixes of the genres' tints, plus noise (int32)."""
    tints = _TINTS[genres]

    def mix() -> np.ndarray:
        # Flat-Dirichlet weights in thousandths: the gaps between sorted uniform cuts.
        cuts = np.sort(rng.integers(0, 1001, size=genres.size - 1))
        weights = np.diff(np.concatenate([[0], cuts, [1000]]))
        return _div_array(weights @ tints, 1000)

    top, bottom = mix(), mix()
    y = np.arange(height, dtype=np.int64)[:, None]
    column = _div_array(top[None, :] * (height - 1 - y) + bottom[None, :] * y, height - 1)
    image = np.repeat(column[:, None, :], width, axis=1).astype(np.int32)
    # Low-frequency blotches (a coarse random field upsampled) and fine grain: the texture of
    # a printed poster, and a reason the model must look at shapes, not single pixels.
    image += _upsample(rng.integers(-28, 29, size=(6, 4, 3)), width, height).astype(np.int32)
    image += rng.integers(-8, 9, size=image.shape).astype(np.int32)
    return image


def _title_block(image: np.ndarray, rng: np.random.Generator, width: int, height: int) -> None:
    """A neutral title bar at the top with a few 'words': poster-like clutter, no signal."""
    bar = np.zeros((height, width), dtype=np.uint8)
    y1 = max(1, _div(int(rng.integers(6 * height, 10 * height + 1)), 100))
    bar[:y1] = 255
    shade = (25, 235)[int(rng.integers(0, 2))]
    _blend(image, bar, np.full(3, shade), 218)
    words = np.zeros_like(bar)
    x = int(rng.integers(8 * width, 20 * width + 1)) // 100
    yc = y1 // 2
    while True:
        w = int(rng.integers(8 * width, 22 * width + 1)) // 100
        if 100 * (x + w) > 92 * width:
            break
        words[max(0, yc - 1) : yc + 2, x : x + w + 1] = 255
        x += w + 4 * width // 100
    _blend(image, words, np.full(3, 255 - shade), 230)


def _draw_poster(
    rng: np.random.Generator, present: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Render one poster (uint8 RGB, height x width x 3) for the genre flags `present`."""
    genres = np.flatnonzero(present)
    image = _background(rng, genres, width, height)
    for _ in range(int(rng.integers(0, _MAX_CLUTTER + 1))):
        cx, cy = int(rng.integers(0, width * _UNIT)), int(rng.integers(0, height * _UNIT))
        a, b = (int(v) for v in rng.integers(8 * width * _UNIT // 100,
                                             25 * width * _UNIT // 100 + 1, size=2))
        blob = _ellipse_mask(width, height, (cx, cy), (a, b), int(rng.integers(0, 180)))
        colour = rng.integers(0, 256, size=3)
        _blend(image, blob, colour, int(rng.integers(77, 180)))
    base = 13 * width * _UNIT // 100
    for g in _DRAW_ORDER:
        if not present[g]:
            continue
        name = GENRES[g]
        # Every jitter is drawn even when the motif is then dropped, so the random stream,
        # and with it the rest of the poster, does not depend on that coin.
        dx, dy = (int(v) for v in rng.integers(-_POS_JITTER, _POS_JITTER + 1, size=2))
        scale = int(rng.integers(_SCALE_RANGE[0], _SCALE_RANGE[1] + 1))
        rot = int(rng.integers(-_ROTATION, _ROTATION + 1))
        jitter = rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
        colour = np.clip(_COLOURS[g] + jitter, 0, 255)
        alpha = int(rng.integers(_ALPHA_RANGE[0], _ALPHA_RANGE[1] + 1))
        texture_rng = np.random.default_rng(rng.integers(0, 2**63))
        if rng.integers(0, 100) < _DROP_MOTIF:
            continue
        _, kind, (fx, fy) = _SIGNATURES[name]
        cx, cy = (fx + dx) * width * _UNIT // 1000, (fy + dy) * height * _UNIT // 1000
        mask = _motif_mask(kind, cx, cy, base * scale // 100, rot, texture_rng, width, height)
        # The whole-poster Documentary grid is faint so it does not hide the other motifs.
        _blend(image, mask, colour, alpha * 6 // 10 if kind == "grid" else alpha)
    _title_block(image, rng, width, height)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_genres(rng: np.random.Generator) -> np.ndarray:
    """Independent Bernoulli draws per genre; an empty draw gets one genre by frequency."""
    present = rng.random(NUM_GENRES) < _FREQ
    if not present.any():
        present[rng.choice(NUM_GENRES, p=_FREQ / _FREQ.sum())] = True
    return present


def _validate(config: DemoSourceConfig) -> None:
    # A config built in code skips params.yaml's checks; these are the ones the drawing
    # code itself needs (the config's bounds, e.g. at least 20 posters, are for runs).
    for name in ("n_posters", "seed", "width", "height"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if config.n_posters < 1:
        raise ValueError(f"n_posters must be at least 1, got {config.n_posters}")
    if config.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {config.seed}")
    if config.width < MIN_SIZE or config.height < MIN_SIZE:
        raise ValueError(f"width and height must be at least {MIN_SIZE} px, got "
                         f"{config.width}x{config.height}")


def generate_demo(out_dir: str | os.PathLike[str], config: DemoSourceConfig) -> dict:
    """Write a synthetic poster data set (`labels.csv` + `posters/`) to `out_dir`.

    The same config always gives byte-identical files (see the module docstring). An
    existing `out_dir` is replaced as a whole once the new set is complete; it must hold
    nothing but `labels.csv` and `posters/`, so a wrong path never deletes other data.

    Returns a summary: `out_dir`, `n_posters`, `seed`, `size` (`{"width", "height"}`) and
    `genre_counts` (posters per genre, in vocabulary order).
    """
    _validate(config)
    n_posters, seed, width, height = config.n_posters, config.seed, config.width, config.height
    out = Path(out_dir).resolve()
    rows: list[dict[str, str]] = []
    counts = np.zeros(NUM_GENRES, dtype=np.int64)
    with building(out) as tmp:
        (tmp / POSTERS_DIR).mkdir()
        for i in track(range(n_posters), "ingest demo", "poster"):
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
    return {
        "source": "demo",
        "out_dir": str(out),
        "n_posters": n_posters,
        "seed": seed,
        "size": {"width": width, "height": height},
        "genre_counts": {g: int(c) for g, c in zip(GENRES, counts, strict=True)},
    }


def _check_tables() -> None:
    """The frequency table and the signatures must name exactly the 19 genres, and every
    signature a motif that `_MOTIFS` can draw."""
    if set(GENRE_FREQUENCIES) != set(GENRES) or set(_SIGNATURES) != set(GENRES):
        raise AssertionError("GENRE_FREQUENCIES and _SIGNATURES must name the 19 genres")
    undrawable = sorted({kind for _, kind, _ in _SIGNATURES.values()} - set(_MOTIFS))
    if undrawable:
        raise AssertionError(f"no drawing function for motif(s) {', '.join(undrawable)}")


_check_tables()
