"""What every benchmark measures the same way: repetitions, CPU time, load and memory.

- `repeat(fn, times)`: runs `fn` `times` times (at least 3 for a figure), each timed by wall
  clock and by this process's CPU time (every thread of it), and summarises the runs by
  their medians (`Summary`): a machine shared with other work swings wall time, while CPU
  time per item moves much less, so both are printed. `interleaved` does it for the two
  sides of a comparison, alternating them.
- `load_average()`: the 1-minute load average, printed at a benchmark's start and end so a
  reader can tell a loaded run from a quiet one.
- `rss_mib()` / `peak_rss_mib()`: current and peak resident memory of this process; a
  memory figure is the peak minus the baseline measured after the imports, in the same
  process (TensorFlow and tfx-bsl alone are most of a reader's memory).
- `gemm_gflops_per_cpu_second()` and `forward_flops(model)`: this CPU's float32 matrix
  product rate, and a model's arithmetic per image: together, the least CPU time a
  model's forward pass (or training step, about 3 forward passes) can take here.
- `closing_lines(name, ceiling, result)`: every benchmark's last two lines (issue 27 item
  5): `ceiling: ...`, this machine's own bound for the work, measured in the same run,
  then `NAME: RESULT ...`, whose first figure is the result (the one number a script
  reads), with CPU per item beside wall time. A benchmark that has nothing to measure
  (no GPU, no data) says so in one line instead, without figures.

Used by every script in bench/; import it as `from measure import ...` (bench/ is on
sys.path when a script there runs).
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_REPEATS = 3


@dataclass(frozen=True)
class Run:
    """One timed call: wall and CPU seconds, and what the call returned."""

    wall_s: float
    cpu_s: float
    value: Any = None


@dataclass(frozen=True)
class Summary:
    """The median of several runs of the same work over `items` items."""

    runs: tuple[Run, ...]
    items: int

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def cpu_s(self) -> float:
        return statistics.median(r.cpu_s for r in self.runs)

    @property
    def rate(self) -> float:
        """Items per second of wall time (median run)."""
        return self.items / self.wall_s

    @property
    def cpu_us_per_item(self) -> float:
        return 1e6 * self.cpu_s / self.items

    @property
    def cores_used(self) -> float:
        """CPU seconds per wall second: how many cores the work kept busy."""
        return self.cpu_s / self.wall_s

    def spread(self) -> str:
        """The runs' wall times, for a reader to judge the noise."""
        return "/".join(f"{r.wall_s:.2f}" for r in self.runs) + " s"

    def describe(self, unit: str = "item") -> str:
        return (f"{self.rate:.1f} {unit}s/s (median of {len(self.runs)}: {self.spread()}), "
                f"{self.cpu_us_per_item:.0f} us CPU per {unit}, "
                f"{self.cores_used:.2f} cores busy")


def _stat_fields(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()  # the name may hold spaces


def _children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(entry)[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # ended while we looked
    return children


def tree_cpu_seconds() -> float:
    """CPU seconds of this process (every thread), its children that ended and were
    waited for, and every live descendant with its own ended children: worker processes
    included, wherever they hang in the tree (a fork server's workers are its children,
    not ours). Linux /proc; take differences."""
    ticks = os.sysconf("SC_CLK_TCK")
    # This process's own figure first: the /proc scan below (a few ms) is not the work's.
    total = sum(int(v) for v in _stat_fields(os.getpid())[11:15])
    children = _children()
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        todo.extend(children.get(pid, []))
    return total / ticks


def grandchildren_ended(timeout_s: float = 10.0) -> None:
    """Wait (at most `timeout_s`) until no process below this one's children is alive:
    augment's workers (a fork server's children) end on their own after the stage has
    returned, and their last CPU belongs to the stage, not to whatever is timed next. The
    fork server itself (this process's child) stays."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = _children()
        if not any(children.get(child) for child in children.get(os.getpid(), [])):
            return
        time.sleep(0.01)


def measure(fn: Callable[[], Any], tree: bool = False,
            settle: Callable[[], None] | None = None) -> Run:
    """Time one call of `fn` by wall clock and by CPU time: this process's (every
    thread), or with `tree` its whole process tree's (work done in worker processes).
    `settle` runs after the wall clock stops, before the CPU clock is read (say,
    `grandchildren_ended`: the work's processes finish, their exit not timed as wall)."""
    clock = tree_cpu_seconds if tree else time.process_time
    # The benchmark's own CPU inside the timed span is left out: the tree clock's scan of
    # /proc after its first reading, and `settle` (grandchildren_ended polls /proc), 3-6
    # ms a run on a 2-core machine, 2-3 us a poster at 2,000 posters.
    own = time.process_time()
    cpu = clock()
    own = time.process_time() - own
    wall = time.perf_counter()
    value = fn()
    wall = time.perf_counter() - wall
    if settle is not None:
        waited = time.process_time()
        settle()
        own += time.process_time() - waited
    return Run(wall, clock() - cpu - own, value)


def repeat(fn: Callable[[], Any], items: int, times: int = MIN_REPEATS,
           tree: bool = False) -> Summary:
    """`fn` run `times` times (each doing the same work over `items` items); `tree`: CPU
    time of the whole process tree (see `measure`). One side of `interleaved`."""
    return interleaved({"runs": fn}, times, items, tree)["runs"]


def interleaved(runs: Mapping[str, Callable[[], Any]], times: int,
                items: int | Mapping[str, int], tree: bool = False,
                settle: Callable[[], None] | None = None) -> dict[str, Summary]:
    """Each side's `times` runs, the sides alternating (a, b, a, b, ...): drift on a
    shared machine (a neighbour's job, the clock) then falls on both sides alike instead
    of on whichever ran last. `items`: per side, or one count for all; `tree` and
    `settle` as `measure` takes them, for every run."""
    if times < 1:
        raise ValueError(f"times must be at least 1, got {times}")
    done: dict[str, list[Run]] = {side: [] for side in runs}
    for _ in range(times):
        for side, fn in runs.items():
            done[side].append(measure(fn, tree, settle))
    return {side: Summary(tuple(done[side]), items if isinstance(items, int) else items[side])
            for side in runs}


def load_average() -> float:
    """The 1-minute load average (runnable processes, all users)."""
    return os.getloadavg()[0]


def load_line(when: str) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"load average (1 min) at {when}: {load_average():.2f} on {cpus} CPUs"


def rss_mib() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_gflops_per_cpu_second(n: int = 1024, repeats: int = 20) -> float:
    """float32 matrix products (numpy's BLAS, held to one thread) on this CPU: 2 x n^3
    operations per product, in billions per CPU-second: the rate a convolution or dense
    layer can reach at best, per core kept busy. One thread, because a BLAS thread that
    waits for another on a loaded machine spins and counts CPU time without work (two
    threads measured 46 GFLOP per CPU-second at load 3.5 to 10, 85 to 97 quiet)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    with threadpool_limits(1, user_api="blas"):
        a @ a  # warm-up
        cpu = time.process_time()
        for _ in range(repeats):
            a @ a
        cpu = time.process_time() - cpu
    return 2 * n**3 * repeats / cpu / 1e9


def forward_flops(model: Any) -> float:
    """Floating-point operations (2 per multiply-add) of one image through `model`'s
    convolutions and dense layers, nested models included: the matrix-product work, beside
    which the other layers (pooling, activations, normalisation) are small. A training
    step is about 3 times this (the forward pass, the gradients of the inputs and of the
    weights). Keras models built on a fixed input size."""
    import keras

    total = 0.0
    todo = list(model.layers)
    while todo:
        layer = todo.pop()
        if isinstance(layer, keras.Model):
            todo += layer.layers
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            # kernel: (kh, kw, in, out) or (in, out); every output position of one image
            # does kernel.size multiply-adds (group convolutions are not used here).
            positions = 1
            for extent in layer.output.shape[1:-1]:
                positions *= int(extent)
            kernel = 1
            for extent in layer.kernel.shape:
                kernel *= int(extent)
            total += 2.0 * positions * kernel
    return total


_LEADING_FIGURE = re.compile(r"-?\d[\d,]*(\.\d+)?")


def closing_lines(name: str, ceiling: str, result: str) -> None:
    """Print a benchmark's last two lines: `ceiling: CEILING` (this machine's bound for the
    work, measured in the same run), then `NAME: RESULT`. RESULT must start with its figure
    (a ratio such as 1.02x, a rate, seconds), so that a reader or a script takes the first
    number of the last line as the result; a ValueError says which rule a line breaks."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"bench name {name!r}: lowercase letters, digits, - and _ only")
    if not ceiling.strip():
        raise ValueError(f"{name}: the ceiling line is empty")
    if not _LEADING_FIGURE.match(result):
        raise ValueError(f"{name}: the result must start with its figure, got {result[:40]!r}")
    print(f"ceiling: {ceiling}")
    print(f"{name}: {result}", flush=True)
