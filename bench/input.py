"""Input preparation benchmark: our `augment` stage against the study's loading loop, the
pixels each writes against a common reference, and the shard reader's memory.

    .venv/bin/python bench/input.py [--posters DIR] [--size 64] [--n 2000] [--repeats 7]

Both sides take the same posters (the first `--n` of ../shared/data/posters-movielens when
present, else generated demo posters at that set's 128x188 size) to `--size` pixels:
- study: the 2017 notebook's serial loop, `cv2.imread` at full size, `cv2.resize` (bilinear),
  appended and stacked into one float32 array held in memory;
- ours: `augment_and_shard` with upsampling off: worker processes, one per CPU (render.py),
  JPEG decoded at 1/2, 1/4 or 1/8 scale where the poster is that many times the size,
  decoded straight to RGB, the shrink left finished bilinear when under 2x (else
  INTER_AREA; images.resize), then what the study does not do: a quality-95 JPEG encode,
  a tf.train.Example per poster and its TFRecord frame (in the workers), the shard files
  (this process), and the validation and test splits' one poster each (the stage needs
  all three splits).
Each side runs `--repeats` times (at least 3, default 7: on this project's shared 2-core
machine the study's loop alone ran at 2,470-3,700 posters/s in eight runs in a row), the
sides alternating; its figure is the median run's images per second, printed with the CPU
time per image of the whole process tree (every thread of this process and of the worker
processes), which a loaded machine disturbs much less than wall time. The load average
is printed at start and end.

Quality: each side's images against a reference (full decode + INTER_AREA resize, the
antialiased shrink): mean absolute difference per channel value, 0-255. Ours is read back
from the shards, so it includes the JPEG encode.

Probe: validate's poster probe (`probe.probe_posters`) against its version before issue 14
(kept below, verbatim): the same measurements (asserted), timed the same way.

Where the CPU goes: each step of both sides timed alone over the same posters in one
thread, the project's own functions for ours (their sum is the work ours must do); ours
in one thread without the pool and the shard files (`render_batch` over the same posters,
interleaved with the two sides), so the pool's, the second process's and the stage's own
share of ours' process-tree CPU is the difference; and the study's loop in two processes
at once (started together) against one: the wall ratio two cores deliver to work that
shares nothing, and the CPU per image each then takes (shared caches, a busy host).

Memory: a fresh process streams `shards.dataset` (shuffled) over 16,000 and over 64,000
records; its figure is the peak RSS (VmHWM) minus the RSS after importing TensorFlow,
tfx-bsl and the reader (the import alone is most of the process), and the RSS after each
quarter of the records shows where the peak is reached. Target: flat (within 10 % or a
few MiB), not met on a loaded machine. The peak does not grow in proportion to the
records (R33, R34): within a 64k run the resident memory rose over the first 12-16k
records and then stayed flat to the end, while between runs the peak moved over 47-103
MiB at 16k and 62-109 MiB at 64k (103 at 16k and 80 at 64k in one run): the shuffle
buffer (4,096 encoded records, shards.py) fills, and tf.data's buffers and threads and
their malloc arenas settle as the timing goes (with MALLOC_ARENA_MAX=2, 59 MiB at 64k).
That spread is what made 8k against 32k records differ by 9-14 MiB (issue 27): 8k can
end before the plateau, so both sizes are past it.
Before 2026-12-02 the peak was ru_maxrss, which a process started from
this one inherits (Linux keeps the forked parent's high-water mark across exec): the
595-620 MiB "above imports" printed then were this benchmark's own arrays, not the
reader's.

Last two lines (the bench convention, issue 27):
    ceiling: N img/s = C cores x R img per core-second for the steps ours must do ...
    input: F of the study's CPU per image (ours A us vs study B us, process tree, target
    < 1); wall ours ... img/s (P% of the ceiling) vs study ... img/s; reader memory ...
F, the result, is ours' process-tree CPU per image over the study's loop's: below 1,
ours does the same posters with less CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from measure import (  # noqa: E402
    MIN_REPEATS,
    closing_lines,
    grandchildren_ended,
    interleaved,
    load_line,
    measure,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "posters-movielens"
# Both past the reader's shuffle buffer (4,096 records) and the ~12-16k records over
# which tf.data's threads fill their malloc arenas (see the module doc).
MEMORY_SIZES = (16000, 64000)


def study_loop(paths: list[Path], size: int) -> np.ndarray:
    """The study's loader: serial imread at full size, bilinear resize, one float32 array."""
    images = []
    for path in paths:
        image = cv2.imread(str(path))
        images.append(cv2.resize(image, (size, size)))
    return np.array(images, dtype=np.float32)


def reference(paths: list[Path], size: int) -> np.ndarray:
    """Full decode + INTER_AREA resize, RGB: what both sides are compared against."""
    from postergenre.data.images import read_rgb, resize

    return np.stack([resize(read_rgb(path), size) for path in paths])


def old_probe_posters(paths: list[Path], max_pixels: int) -> list:
    """validate's probe before issue 14 (verbatim but for names): Pillow reads the header
    from the file, then the file is read again, decoded in full, converted to RGB and
    hashed; a pool of at most 8 threads."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from postergenre.data.images import drop_alpha, pixel_problem
    from postergenre.data.phash import phash
    from postergenre.data.probe import PosterProbe, _truncated_jpeg

    def header_size(path: Path) -> tuple[int, int] | None:  # Pillow's, as before issue 14
        try:
            with Image.open(path) as image:
                return image.size
        except Exception:  # noqa: BLE001
            return None

    def probe_poster(path: Path) -> PosterProbe:
        if not path.is_file():
            return PosterProbe(exists=False, problem="file not found")
        size = path.stat().st_size
        if size == 0:
            return PosterProbe(exists=True, file_size=0, problem="zero-byte file")
        header = header_size(path)
        width, height = header if header else (None, None)
        too_many = pixel_problem(header, max_pixels) if header else None
        if too_many:
            return PosterProbe(True, size, width, height, problem=too_many)
        data = path.read_bytes()
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None:
            return PosterProbe(True, size, width, height, decodes=False,
                               problem="OpenCV cannot decode it")
        if _truncated_jpeg(data):
            return PosterProbe(True, size, width, height, decodes=False,
                               problem="truncated JPEG (no end-of-image marker)")
        image = drop_alpha(decoded)
        height, width = image.shape[:2]
        channels = 1 if image.ndim == 2 else int(image.shape[2])
        if channels != 3 or image.dtype != np.uint8:
            return PosterProbe(True, size, width, height, True, channels,
                               problem=f"{channels} channel(s), {image.dtype}")
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return PosterProbe(True, size, width, height, True, 3, f"{phash(rgb):016x}")

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        return list(pool.map(probe_poster, paths, chunksize=32))


def _steps(paths: list[Path], size: int, quality: int) -> dict[str, float]:
    """CPU microseconds per poster of each step, one thread: ours, then the study's."""
    from postergenre.data.images import decode_scaled, encode_jpeg, resize
    from postergenre.data.records import frame
    from postergenre.data.shards import PosterRecord, to_example

    def timed(step, items):
        run = measure(lambda: [step(item) for item in items])
        return run.value, run.cpu_s / len(items) * 1e6

    data, read_us = timed(lambda p: p.read_bytes(), paths)
    decoded, decode_us = timed(lambda d: decode_scaled(d, min_side=size), data)
    small, resize_us = timed(lambda im: resize(im[0], size, prefiltered=im[1] > 1), decoded)
    jpegs, encode_us = timed(lambda im: encode_jpeg(im, quality), small)
    labels = np.zeros(19, np.uint8)
    _, example_us = timed(lambda j: frame(to_example(PosterRecord(j, labels, "tt0", "train",
                                                                 origin="tt0"))), jpegs)
    full, imread_us = timed(lambda p: cv2.imread(str(p)), paths)
    _, bilinear_us = timed(lambda im: cv2.resize(im, (size, size)), full)
    return {"read": read_us, "reduced decode": decode_us, "resize": resize_us,
            f"JPEG q{quality}": encode_us, "Example + frame": example_us,
            "study imread": imread_us, "study resize": bilinear_us}


def _study_worker(paths: list[str], size: int, start, elapsed) -> None:
    """One process of the parallel measurement: wait for the common start, then run the
    study's loop (one OpenCV thread) and report its wall and CPU time."""
    import time

    cv2.setNumThreads(1)
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    study_loop([Path(p) for p in paths], size)
    elapsed.put((time.perf_counter() - began, time.process_time() - cpu))


def parallel_ceiling(paths: list[Path], size: int, repeats: int
                     ) -> dict[int, tuple[float, float]]:
    """{processes: (images/s, us CPU per image)} for the study's loop in one process and in
    two at once, medians of `repeats`: what two cores give to work that shares nothing,
    and what running two at once costs each in CPU (shared caches, a busy host). Spawned
    processes (this one has imported TensorFlow); their start-up is not timed."""
    import multiprocessing
    import statistics

    context = multiprocessing.get_context("spawn")
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    names = [str(p) for p in paths]
    for _ in range(repeats):
        for count in (1, 2):
            start, elapsed = context.Event(), context.Queue()
            workers = [context.Process(target=_study_worker, args=(names, size, start, elapsed))
                       for _ in range(count)]
            for worker in workers:
                worker.start()
            start.set()
            times = [elapsed.get(timeout=600) for _ in workers]
            for worker in workers:
                worker.join()
            runs[count].append((count * len(paths) / max(t for t, _ in times),
                                1e6 * sum(c for _, c in times) / (count * len(paths))))
    return {count: (statistics.median(r for r, _ in found),
                    statistics.median(c for _, c in found)) for count, found in runs.items()}


def one_thread(jobs: list, settings) -> list:
    """Ours without the pool and the shard files: `render_batch` over the same posters in
    this process, one OpenCV thread, as a worker runs it (the pool's and the parent's
    share of ours' CPU is the difference)."""
    from postergenre.data.render import render_batch

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return render_batch(jobs, settings)
    finally:
        cv2.setNumThreads(threads)


def make_split(table: pd.DataFrame, split_dir: Path, n: int) -> None:
    """A split folder whose train split holds `n` rows (posters repeated with new ids)."""
    reps = -(-n // len(table))
    rows = pd.concat([table] * reps, ignore_index=True).iloc[:n].copy()
    rows["imdb_id"] = [f"tt{9_000_000 + i:07d}" for i in range(n)]
    split_dir.mkdir(parents=True, exist_ok=True)
    rows.to_csv(split_dir / "train.csv", index=False)
    for name in ("validation", "test"):
        rows.iloc[:1].to_csv(split_dir / f"{name}.csv", index=False)


# The peak is VmHWM, this process image's high-water mark: not ru_maxrss, which Linux
# carries over an exec from the forked parent (this benchmark, holding the study's arrays).
# Also the resident memory after each quarter of the records: where the peak is reached.
READER = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow
from tfx_bsl.public import tfxio
from postergenre.data.shards import dataset
def status(field):
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024
base = status("VmRSS")
n, quarter, quarters = 0, int(sys.argv[2]) // 4, []
for images, labels in dataset(sys.argv[1], "train", 32, shuffle=True, seed=0):
    n += int(images.shape[0])
    if n // quarter > len(quarters):
        quarters.append(status("VmRSS"))
print(n, base, status("VmHWM"), *quarters)
"""


def reader_memory(prepared: Path, records: int) -> tuple[int, float, float, list[float]]:
    """(records read, RSS after imports, peak RSS, RSS after each quarter of the records)
    of a fresh reader process, MiB."""
    out = subprocess.run([sys.executable, "-c", READER, str(prepared), str(records)],
                         check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    count, base, peak, *quarters = out.split()
    return int(count), float(base), float(peak), [float(q) for q in quarters]


def stored_images(prepared: Path, ids: list[str]) -> np.ndarray:
    """Our train split's images, decoded from the shards, in `ids` order."""
    from postergenre.data.shards import iter_records

    by_id = {r["imdb_id"]: r["image"] for r in iter_records(prepared, "train")}
    return np.stack([by_id[i] for i in ids])


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=Path, default=SHARED if SHARED.is_dir() else None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000, help="posters for the speed figures")
    parser.add_argument("--repeats", type=int, default=7,
                        help="runs of each side, alternating (this machine's speed swings)")
    args = parser.parse_args()
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be at least {MIN_REPEATS}")

    from postergenre.configs import AugmentConfig
    from postergenre.data.augment import augment_and_shard
    from postergenre.data.images import available_cpus, decode_threads, jpeg_size, scale_factor
    from postergenre.data.render import PosterJob, RenderSettings

    print(load_line("start"), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, source = args.posters, "posters-movielens"
        if data is None:
            from postergenre.configs import DemoSourceConfig
            from postergenre.sources.demo import generate_demo

            data, source = work / "data", "generated demo posters, 128x188"
            generate_demo(data, DemoSourceConfig(n_posters=args.n, seed=0, width=128,
                                                 height=188))
        table = pd.read_csv(data / "labels.csv", dtype=str, keep_default_na=False)
        sample = table.iloc[: args.n]
        paths = [data / p for p in sample["poster"]]
        factors = [scale_factor(jpeg_size(p.read_bytes()), args.size) for p in paths]
        n = len(paths)

        config = AugmentConfig(max_upsample=1.0, image_size=args.size)
        make_split(sample, work / "split", n)
        ids = pd.read_csv(work / "split" / "train.csv", dtype=str)["imdb_id"].tolist()
        settings = RenderSettings(args.size, tuple(config.transforms), config.crop_min_scale,
                                  config.jitter, config.seed, config.jpeg_quality)
        jobs = [PosterJob(str(p), movie, "train", bytes(19), 0)
                for p, movie in zip(paths, ids, strict=True)]
        counter = iter(range(args.repeats))
        sides = interleaved({
            "study": lambda: study_loop(paths, args.size),
            "ours": lambda: augment_and_shard(data, work / "split",
                                              work / f"ours{next(counter)}", config),
            "one thread": lambda: one_thread(jobs, settings)},
            args.repeats, {"study": n, "ours": n + 2, "one thread": n}, tree=True,
            settle=grandchildren_ended)
        study, ours, single = sides["study"], sides["ours"], sides["one thread"]
        study_array = study.runs[-1].value
        assert study_array.shape == (n, args.size, args.size, 3), study_array.shape

        from postergenre.configs import ValidateConfig
        from postergenre.data.probe import probe_posters

        max_pixels = ValidateConfig().max_pixels
        cells = [str(p.relative_to(data)) for p in paths]
        probes = interleaved({"old": lambda: old_probe_posters(paths, max_pixels),
                              "new": lambda: probe_posters(cells, data, max_pixels)},
                             args.repeats, n)
        probe_old, probe_new = probes["old"], probes["new"]
        assert probe_new.runs[0].value == probe_old.runs[0].value  # the same measurements

        steps = _steps(paths, args.size, config.jpeg_quality)
        parallel = parallel_ceiling(paths, args.size, args.repeats)

        truth = reference(paths, args.size)
        study_error = mean_abs(study_array[..., ::-1], truth)  # the study's array is BGR
        our_error = mean_abs(stored_images(work / "ours0", ids), truth)

        memory = {}
        for size in MEMORY_SIZES:
            make_split(table, work / f"split{size}", size)
            augment_and_shard(data, work / f"split{size}", work / f"prep{size}", config)
            count, base, peak, quarters = reader_memory(work / f"prep{size}", size)
            assert count == size, (count, size)
            memory[size] = (base, peak, quarters)

    reduced = {f: factors.count(f) for f in sorted(set(factors))}
    print(f"posters: {n} from {source}, to {args.size} px; decode scale 1/k for k: "
          f"{reduced}; our pool {available_cpus()} processes")
    print(f"study (imread full size, bilinear resize, float32 array): "
          f"{study.describe('image')}")
    print(f"ours (augment_and_shard: {available_cpus()} worker processes, reduced decode, "
          f"bilinear finish under 2x, JPEG q{config.jpeg_quality} + Example, TFRecord, {n} + 2 "
          f"posters; the first run also starts the fork server): {ours.describe('image')}")
    print(f"quality vs full decode + INTER_AREA: ours {our_error:.2f} (after JPEG), "
          f"study {study_error:.2f} (mean abs difference, 0-255)")
    print(f"validate probe before (2 reads, Pillow header, <= 8 threads): "
          f"{probe_old.describe('poster')}")
    print(f"validate probe now (1 read, JPEG header from the bytes, {decode_threads()} "
          f"threads; the same results): {probe_new.describe('poster')}")
    ours_steps = {k: v for k, v in steps.items() if not k.startswith("study")}
    required = sum(ours_steps.values())
    print("CPU per poster, each step alone in one thread: ours "
          + " + ".join(f"{k} {v:.0f}" for k, v in ours_steps.items())
          + f" = {required:.0f} us; study imread {steps['study imread']:.0f}"
          f" + resize {steps['study resize']:.0f} = "
          f"{steps['study imread'] + steps['study resize']:.0f} us")
    print(f"ours in one thread, no pool, no shard files (render_batch, the same posters): "
          f"{single.describe('image')}")
    (one_rate, one_cpu), (two_rate, two_cpu) = parallel[1], parallel[2]
    print(f"ours' process-tree CPU per image: {single.cpu_us_per_item:.0f} us rendering in "
          f"one thread + {ours.cpu_us_per_item - single.cpu_us_per_item:.0f} us for the "
          f"pool, two processes at once and the stage's own work (tables, shard files); "
          f"two processes of the study's loop at once took {two_cpu:.0f} us CPU per image "
          f"each against {one_cpu:.0f} us alone, {two_rate:.0f} img/s against {one_rate:.0f}")
    for size, (base, peak, quarters) in memory.items():
        print(f"reader memory over {size:,} records: peak {peak - base:.0f} MiB above "
              f"imports ({peak:.0f} - {base:.0f}); after each quarter of the records "
              + " / ".join(f"{q - base:.0f}" for q in quarters) + " MiB")
    print(load_line("end"))
    cores = len(os.sched_getaffinity(0))
    bound = cores * 1e6 / required
    closing_lines(
        "input",
        f"{bound:.0f} img/s = {cores} cores x {1e6 / required:.0f} img per core-second for "
        f"the steps ours must do, each alone in one thread ({required:.0f} us); this "
        f"machine's two processes at once run {two_rate / one_rate:.2f} times one",
        f"{ours.cpu_us_per_item / study.cpu_us_per_item:.2f} of the study's CPU per image "
        f"(ours {ours.cpu_us_per_item:.0f} us vs study {study.cpu_us_per_item:.0f} us, "
        f"process tree, target < 1); wall ours {ours.rate:.0f} img/s ({ours.rate / bound:.0%} "
        f"of the ceiling) vs study {study.rate:.0f} img/s; reader memory "
        f"{_memory_figures(memory)}")


def _memory_figures(memory: dict[int, tuple[float, float, list[float]]]) -> str:
    """'A / B MiB above imports at 16k / 64k records'."""
    above = " / ".join(f"{peak - base:.0f}" for base, peak, _ in memory.values())
    sizes = " / ".join(f"{size // 1000}k" for size in memory)
    return f"{above} MiB above imports at {sizes} records"


if __name__ == "__main__":
    main()
