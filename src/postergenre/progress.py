"""Progress of long work: a bar on a terminal, plain lines in a pipe.

Whether stderr is a terminal (`on_terminal`) is decided here, once, for every stage. On a
terminal, `Progress` draws a tqdm bar that redraws in place and goes when the work ends.
Piped (CI, `| tee`, a log file, a Kubeflow pod's log) a bar's carriage returns would make
one ever-growing line, or nothing at all for many minutes: it prints plain lines instead,
one per step (`every_step`: an epoch, a model scored) or one per tenth of the work
(posters), each ending with the seconds since the line before. A tenth's line waits until
at least `POSTERGENRE_PROGRESS_SECONDS` (default 10) have passed since the line before, and
a step's a tenth of that (1 s; the last step always prints), so work of a few seconds
prints only its stage's own result line and a 0.1 s epoch does not print sixty.

    augment train: 240/1200 posters (20%, 3.1 s)
    train scratch_cnn: epoch 3/10 loss 0.4512 val_loss 0.4620 val_auc 0.6114 (41.7 s)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
INTERVAL_ENV = "POSTERGENRE_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 10.0


def line_interval() -> float:
    """The least seconds between two piped lines of a tenth (the environment's, else 10)."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether `stream` (default: stderr, where progress goes) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


def _amount(done: int, total: int, unit: str) -> str:
    """`done/total units`; bytes scaled (`1.2MB/3.4MB`)."""
    if unit == "B":
        return f"{tqdm.format_sizeof(done, 'B', 1000)}/{tqdm.format_sizeof(total, 'B', 1000)}"
    return f"{done}/{total} {unit}s"


class Progress:
    """A bar on a terminal, plain lines when piped (see the module doc).

    `total`: the units of the whole work (None when unknown: piped, nothing is printed);
    `initial`: units done before (a resumed training's epochs); `every_step`: a line per
    `update` rather than per tenth; `lines`: False for work whose result is its output
    (`predict`), which prints nothing piped; `interval`: the least seconds between two
    tenths' lines (default `line_interval()`), on `clock`.
    """

    def __init__(self, label: str, total: int | None, unit: str, *, initial: int = 0,
                 every_step: bool = False, lines: bool = True,
                 stream: IO[str] | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = initial
        self.every_step = every_step
        self.stream = sys.stderr if stream is None else stream
        self.bar: tqdm | None = None
        terminal = on_terminal(self.stream)
        self.lines = lines and not terminal
        if terminal:
            self.bar = tqdm(total=total, initial=initial, desc=label, unit=unit,
                            unit_scale=unit == "B", leave=False, file=self.stream,
                            mininterval=0.5)
        self._tenth = self._tenths(initial)
        self.interval = line_interval() if interval is None else interval
        self.clock = clock
        self._since = clock()

    def _tenths(self, done: int) -> int:
        return done * 10 // self.total if self.total else 0

    def update(self, n: int = 1, shown: Mapping[str, str] | None = None) -> None:
        """`n` more units done; `shown`: values for the bar's postfix and the step's line,
        each shown as `key value` (or `value` alone for the key "")."""
        self.done += n
        values = " ".join(f"{k} {v}" if k else v for k, v in (shown or {}).items())
        if self.bar is not None:
            if values:
                self.bar.set_postfix_str(values, refresh=False)
            self.bar.update(n)
            return
        if not self.lines or not self.total:
            return
        tenth = self._tenths(self.done)
        now = self.clock()
        if self.every_step:
            if now - self._since < self.interval / 10 and self.done < self.total:
                return
        elif tenth == self._tenth or now - self._since < self.interval:
            return
        self._tenth = tenth
        seconds, self._since = now - self._since, now
        if self.every_step:
            line = f"{self.label}: {self.unit} {self.done}/{self.total} {values}".rstrip() \
                + f" ({seconds:.1f} s)"
        else:
            line = (f"{self.label}: {_amount(self.done, self.total, self.unit)} "
                    f"({100 * self.done // self.total}%, {seconds:.1f} s) {values}").rstrip()
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(items: Iterable[T], label: str, unit: str, total: int | None = None) -> Iterator[T]:
    """Each of `items`, with a `Progress` over them (`total`: default `len(items)`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(label, total, unit) as progress:
        for item in items:
            yield item
            progress.update()
