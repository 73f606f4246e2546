"""Input pipeline benchmark: our preprocessing + shard writing vs the study's loop, and the
reader's peak memory over 1,000 and 8,000 posters.

Run: .venv/bin/python bench/input.py [--posters DIR] [--size 64]

- study: a serial OpenCV loop (imread, resize, append) into one in-memory float32 array,
  as the 2017 notebook did;
- ours: `augment_and_shard` on the same posters (parallel decode/resize/encode, sharded
  TFRecords, nothing held in memory), with augmentation off so both do the same work.
- reader: a fresh process streams `shards.dataset` over 1,000 and over 8,000 records and
  reports its peak RSS (target: flat, within 10 %).

Uses ../shared/data/posters-movielens when present, generated demo posters otherwise. The
last line holds every figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "posters-movielens"


def study_loop(paths: list[Path], size: int) -> float:
    """Images per second of the study's serial loop into one float32 array."""
    start = time.perf_counter()
    images = []
    for path in paths:
        image = cv2.imread(str(path))
        images.append(cv2.resize(image, (size, size)))
    array = np.array(images, dtype=np.float32)
    elapsed = time.perf_counter() - start
    assert array.shape == (len(paths), size, size, 3)
    return len(paths) / elapsed


def make_split(table: pd.DataFrame, split_dir: Path, n: int) -> None:
    """A split folder whose train split holds `n` rows (posters repeated with new ids)."""
    reps = -(-n // len(table))
    rows = pd.concat([table] * reps, ignore_index=True).iloc[:n].copy()
    rows["imdb_id"] = [f"tt{9_000_000 + i:07d}" for i in range(n)]
    split_dir.mkdir(parents=True, exist_ok=True)
    rows.to_csv(split_dir / "train.csv", index=False)
    for name in ("validation", "test"):
        rows.iloc[:1].to_csv(split_dir / f"{name}.csv", index=False)


READER = """
import os, resource, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from postergenre.shards import dataset
n = 0
for images, labels in dataset(sys.argv[1], "train", 32, shuffle=True, seed=0):
    n += int(images.shape[0])
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def reader_peak_mib(prepared: Path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", READER, str(prepared)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[-2]), int(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=Path, default=SHARED if SHARED.is_dir() else None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000, help="posters for the speed figures")
    args = parser.parse_args()

    from postergenre.augment import augment_and_shard
    from postergenre.configs import AugmentConfig

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.posters
        source = "posters-movielens"
        if data is None:
            from postergenre.configs import DemoSourceConfig
            from postergenre.sources.demo import generate_demo

            data, source = work / "data", "generated"
            generate_demo(data, DemoSourceConfig(n_posters=2000, seed=0))
        table = pd.read_csv(data / "labels.csv", dtype=str, keep_default_na=False)
        sample = table.iloc[: args.n]
        paths = [data / p for p in sample["poster"]]
        for path in paths:  # warm the page cache for both contenders alike
            path.read_bytes()

        baseline = study_loop(paths, args.size)
        config = AugmentConfig(max_upsample=1.0, image_size=args.size)
        make_split(sample, work / "split", len(sample))
        start = time.perf_counter()
        augment_and_shard(data, work / "split", work / "ours", config)
        ours = (len(sample) + 2) / (time.perf_counter() - start)

        peaks = {}
        for n in (1000, 8000):
            make_split(table, work / f"split{n}", n)
            augment_and_shard(data, work / f"split{n}", work / f"prep{n}", config)
            count, peaks[n] = reader_peak_mib(work / f"prep{n}")
            assert count == n, (count, n)

    growth = peaks[8000] / peaks[1000] - 1
    print(f"input ({source}, {len(sample)} posters, {args.size} px, {os.cpu_count()} CPUs): "
          f"preprocess+shards {ours:.0f} img/s vs study serial float32 loop {baseline:.0f} "
          f"img/s, ratio {ours / baseline:.2f}x; reader peak RSS {peaks[1000]} MiB over 1,000 "
          f"vs {peaks[8000]} MiB over 8,000 posters ({growth:+.1%})")


if __name__ == "__main__":
    main()
