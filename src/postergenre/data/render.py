"""One poster to the images `augment` stores: decode, resize, augmented copies, JPEG.

This module runs in augment's worker processes, so it imports neither TensorFlow nor
pandas (a worker starts in milliseconds from the fork server and holds only OpenCV and
NumPy); the records come back serialised and framed (records.py), so the parent only
appends them to the shard files.
Processes rather than threads: the thread pool they replace spent most of its extra CPU
handing the GIL between threads; in runs interleaved on this project's 2-core machine
(2,000 real posters) the processes wrote 15-30 % more posters per second, and two
processes doing the study's loop ran 1.8-2.1x one (bench/input.py prints both figures).

Deterministic whatever the process or the order: each augmented copy draws from its own
generator, seeded by (seed, movie, copy number).

A poster's stored original is `prepare_poster`'s output, the one preprocessing every model
sees: training and evaluate decode it from the shards, and `predict` prepares the posters
it is given with the same function (then the same decoder), so a served poster gets the
probabilities evaluate reported for it.

A poster is read and decoded through images.py's one guard (`read_poster_file`, then
`decode_scaled`): a FIFO or other non-regular file is refused, never waited on, and only
the poster formats are decoded. The byte and pixel bounds are validate's to set
(`validate.max_file_bytes`, `validate.max_pixels`, which may be raised above their
defaults), and validate measured every poster augment reads against them; augment does
not apply the defaults again.

The workers end with the process that started them, however it ends (SIGKILL included):
see `_die_with`. A worker that dies (killed for memory, say) fails the run with
`RenderWorkerError`, one line naming the posters it held.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import select
import signal
import sys
import threading
import types
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from postergenre.configs import TRANSFORMS
from postergenre.data.images import (
    DEFAULT_MAX_PIXELS,
    available_cpus,
    colour_jitter,
    decode_scaled,
    encode_jpeg,
    hflip,
    jpeg_size,
    random_crop,
    read_poster_file,
    resize,
    scale_factor,
)
from postergenre.data.records import ORIGINAL, PosterRecord, frame, serialize


@dataclass(frozen=True)
class RenderSettings:
    """What turns a poster into its stored images (augment's config, resolved)."""

    image_size: int
    transforms: tuple[str, ...]
    crop_min_scale: float
    jitter: float
    seed: int
    jpeg_quality: int

    @property
    def crop_side(self) -> int:
        """The side a poster with copies must keep when decoded at reduced scale: its
        smallest crop must still be `image_size` on each side."""
        if "crop" not in self.transforms:
            return self.image_size
        return math.ceil(self.image_size / self.crop_min_scale)


class PosterJob(NamedTuple):
    """One poster to render: its file, movie, split, genre flags and how many augmented
    copies. Plain values in a tuple: a job is pickled to a worker, and a dataclass holding
    a NumPy row took 10 us a job to pickle and unpickle where this takes 3 (a poster's
    whole render takes a few hundred)."""

    path: str
    imdb_id: str
    split: str
    labels: bytes  # one byte per genre, 0 or 1 (`genre_flags`)
    copies: int


def genre_flags(matrix: np.ndarray) -> list[bytes]:
    """Each row of a multi-hot label matrix as a job carries it."""
    return [row.tobytes() for row in np.asarray(matrix, dtype=np.uint8)]


def transform(image: np.ndarray, transforms: Sequence[str], rng: np.random.Generator,
              crop_min_scale: float, jitter: float, size: int, prefiltered: bool = False
              ) -> tuple[np.ndarray, str]:
    """One augmented copy: each chosen transform with probability 1/2, at least one.
    `prefiltered`: `image` was decoded at reduced scale (see images.resize)."""
    chosen = [t for t in transforms if rng.random() < 0.5] or [transforms[0]]
    if "crop" in chosen:
        image = random_crop(image, rng, crop_min_scale)
    image = resize(image, size, prefiltered)
    if "hflip" in chosen:
        image = hflip(image)
    if "jitter" in chosen:
        image = colour_jitter(image, rng, jitter)
    return image, "+".join(t for t in TRANSFORMS if t in chosen)


def prepare_poster(data: bytes, source: str, size: int, quality: int,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bytes:
    """The served preprocessing: an encoded poster -> the `size`-pixel square JPEG the
    shards store and every model is scored on (decoded at reduced scale where the JPEG
    allows, resized, encoded at `quality`). Errors (PosterDecodeError) name `source`."""
    return _prepared(*decode_scaled(data, source, size, max_pixels), size, quality)


def _prepared(rgb: np.ndarray, scale: int, size: int, quality: int) -> bytes:
    return encode_jpeg(resize(rgb, size, scale > 1), quality)


def render_poster(job: PosterJob, settings: RenderSettings) -> list[bytes]:
    """The shard records of the poster as it is (`prepare_poster`), then of each copy,
    serialised and framed as a TFRecord file holds them (the parent appends them to the
    shard files)."""
    size, quality = settings.image_size, settings.jpeg_quality
    data = read_poster_file(job.path, max_bytes=None)  # validate's bounds: see above
    images = []
    if job.copies:
        # Copies are cropped first, so they need a larger decode than the original may;
        # the original reuses it only where prepare_poster would decode at the same scale.
        source, scale = decode_scaled(data, job.path, settings.crop_side, None)
        if scale == scale_factor(jpeg_size(data), size):
            images.append((_prepared(source, scale, size, quality), ORIGINAL))
    if not images:
        images.append((prepare_poster(data, job.path, size, quality, None), ORIGINAL))
    for k in range(job.copies):
        rng = np.random.default_rng([settings.seed, zlib.crc32(job.imdb_id.encode()), k])
        image, name = transform(source, settings.transforms, rng, settings.crop_min_scale,
                                settings.jitter, size, scale > 1)
        images.append((encode_jpeg(image, quality), name))
    labels = np.frombuffer(job.labels, dtype=np.uint8)
    return [frame(serialize(PosterRecord(jpeg, labels, job.imdb_id, job.split,
                                         origin=job.imdb_id, augmentation=name)))
            for jpeg, name in images]


def render_batch(jobs: Sequence[PosterJob], settings: RenderSettings) -> list[list[bytes]]:
    """`render_poster` for each job in order: one pool task (a task per poster would cost
    as much in pickling and waking as a small decode)."""
    return [render_poster(job, settings) for job in jobs]


class RenderWorkerError(ChildProcessError):
    """A worker process ended abruptly (killed for memory, say) while rendering posters.
    An OSError (ChildProcessError), as the CLI reports those: one line, no traceback."""


def _start_worker(parent: int) -> None:
    """Each worker's initializer."""
    # The pool is the parallelism: OpenCV's own threads would only contend with it.
    cv2.setNumThreads(1)
    # A Ctrl-C reaches the terminal's whole process group: the owner handles it (and ends
    # the pool); a worker's KeyboardInterrupt would only print a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)


def _die_with(parent: int) -> None:
    """End this worker as soon as process `parent` (the pool's owner) ends.

    A worker's own parent is the fork server, which outlives a killed owner: the workers
    wait for tasks that never come, the fork server for its clients (the workers hold its
    pipe open) to go, and all of them hold the owner's stdout and stderr open, so whoever
    reads the owner's output never sees it end. So a thread waits on a pidfd of the owner
    (readable once it has ended, whatever ended it) and ends the worker; once every worker
    is gone the fork server sees its last client go and ends too. Where pidfds are missing
    (not Linux 5.3+), workers end only with the pool, as before.
    """
    try:
        watched = os.pidfd_open(parent)
    except ProcessLookupError:  # ended before this worker came up
        os._exit(1)
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([watched], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


@contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Start processes without the caller's main script. A spawned or fork-server child
    first re-runs the parent's `__main__` file (to find what was pickled from it): a
    script without an `if __name__ == "__main__":` guard would start augment again in
    every worker. The workers need nothing from it: they run this module only."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class RenderPool:
    """Worker processes for `render_batch`, one per CPU this process may use (default):
    a ProcessPoolExecutor (a worker that dies, say killed for memory, fails the run
    instead of hanging it: augment raises RenderWorkerError), whose workers start from a
    fork server (a fresh interpreter that has imported only this module), never forked
    from the caller, which may hold TensorFlow's threads and gigabytes, and end with the
    caller (`_die_with`). Every worker is started at once (a worker takes about 25 ms to
    come up, which the caller spends reading its tables); every submit still hides the
    main script, should the executor start a process then.
    """

    def __init__(self, workers: int | None = None) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods
                                              else "spawn")
        if "forkserver" in methods:
            context.set_forkserver_preload([__name__])
        self.workers = workers or available_cpus()
        self._executor = ProcessPoolExecutor(self.workers, mp_context=context,
                                             initializer=_start_worker,
                                             initargs=(os.getpid(),))
        with _main_script_hidden():  # the executor starts a worker per submit, up to its size
            for _ in range(self.workers):
                # A task that only starts a worker. A worker dead already breaks the pool:
                # the first real task says so, naming its posters.
                with contextlib.suppress(BrokenProcessPool):
                    self._executor.submit(os.getpid)

    def submit(self, jobs: Sequence[PosterJob], settings: RenderSettings
               ) -> Future[list[list[bytes]]]:
        with _main_script_hidden():
            return self._executor.submit(render_batch, jobs, settings)

    def __enter__(self) -> RenderPool:
        return self

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        # Done: every result is in, and the workers end on their own (an interpreter's
        # teardown, 15-30 ms) while the caller goes on; Python joins them at its exit.
        # An error: what is queued is dropped, the running tasks (a few posters each) end
        # and the workers are waited for.
        self._executor.shutdown(wait=error is not None, cancel_futures=error is not None)

