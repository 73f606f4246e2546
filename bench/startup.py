"""Benchmark: what each CLI entry costs before and around its work (issue 27, item 3).

On the tiny demo data it generates (`params-tiny.yaml`: 48 posters of 48x72 at 32 px, a
one-epoch scratch CNN), the work of `validate`, `evaluate`, `gate`, `predict` (one
poster) and `batch-predict` (the test split) is a few milliseconds; what each command
costs is its fixed cost: the interpreter, imports, model loading, tracing, drawing. Each
command runs as the user runs it (the `postergenre` script, a process of its own); its
CPU is the whole process tree's (every thread, every process it waited for).

`--repo DIR` runs another checkout's `DIR/.venv/bin/postergenre` beside this one's
("before" and "after"), on the same data, the sides alternating, so both are measured in
the same run on the same machine. The line before the result is this machine's floor: a
bare `python -c pass`, and `import tensorflow` (which imports Keras and with it
matplotlib, scikit-learn and pandas), below which no entry that scores with TensorFlow
can go. The last line is the result, the sum of the entries' CPU seconds:

    startup: X.X s CPU for validate, evaluate, gate, predict, batch-predict (before Y.Y s;
    wall ...), each: ...

    .venv/bin/python bench/startup.py [--repo /work/main] [--posters 48] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import closing_lines, load_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENTRIES = ("validate", "evaluate", "gate", "predict", "batch-predict")
TENSORFLOW_ENTRIES = ("evaluate", "predict", "batch-predict")


def children_cpu_s() -> float:
    """CPU seconds of every child process this one has waited for (and of theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU s of the process tree, wall s) of one command, which must succeed."""
    cpu, wall = children_cpu_s(), time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - wall
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return children_cpu_s() - cpu, wall


def make_data(work: Path, postergenre: str, posters: int, env: dict[str, str]) -> None:
    """The demo at params-tiny's size, with `posters` posters: validated, split, prepared,
    one tiny model trained, evaluated and gated (what the measured entries read)."""
    params = ["--params", str(REPO / "params.yaml"), "--params", str(REPO / "params-tiny.yaml")]
    steps = [
        ["ingest", "--source", "demo", "--out", "data", "--demo-n-posters", str(posters)],
        ["validate", "--data", "data", "--out", "validated"],
        ["split", "--labels", "validated", "--out", "split"],
        ["augment", "--data", "data", "--split", "split", "--out", "prepared"],
        ["train-scratch", "--name", "scratch_cnn", "--prepared", "prepared",
         "--out", "models/scratch_cnn"],
        ["evaluate", "--prepared", "prepared", "--model", "scratch_cnn=models/scratch_cnn",
         "--out", "reports"],
    ]
    for step in steps:
        timed([postergenre, *step, *params], work, env)


def entry_commands(work: Path, side: str) -> dict[str, list[str]]:
    """Each measured entry's arguments; `side` keeps the two sides' outputs apart."""
    params = ["--params", str(REPO / "params.yaml"), "--params", str(REPO / "params-tiny.yaml")]
    poster = sorted((work / "data" / "posters").iterdir())[0]
    return {
        "validate": ["validate", "--data", "data", "--out", f"out-{side}/validated", *params],
        "evaluate": ["evaluate", "--prepared", "prepared", "--model",
                     "scratch_cnn=models/scratch_cnn", "--out", f"out-{side}/reports", *params],
        "gate": ["gate", "--evaluation", "reports", "--out", f"out-{side}/gated", *params],
        "predict": ["predict", str(poster), "--model", "models/scratch_cnn", "--format",
                    "json"],
        "batch-predict": ["batch-predict", "--model", "models/scratch_cnn", "--prepared",
                          "prepared", "--out", f"out-{side}/batch"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, help="another checkout to measure beside this "
                        "one (its .venv/bin/postergenre), e.g. /work/main")
    parser.add_argument("--posters", type=int, default=48, help="demo posters (at least 20)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--entries", default=",".join(ENTRIES),
                        help=f"comma-separated, of {', '.join(ENTRIES)}")
    args = parser.parse_args()
    entries = [e for e in args.entries.split(",") if e]
    unknown = sorted(set(entries) - set(ENTRIES))
    if unknown or not entries:
        parser.error(f"--entries: unknown {unknown}; choose from {', '.join(ENTRIES)}")
    sides = {"after": str(Path(sys.executable).parent / "postergenre")}
    if args.repo is not None:
        before = args.repo / ".venv" / "bin" / "postergenre"
        if not before.is_file():
            parser.error(f"--repo: {before} not found (run `make install` there)")
        sides = {"before": str(before), **sides}
    # As a user's shell runs it: no hash seed set (the CLI sets its own), TensorFlow's
    # C++ log level left to the CLI.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONHASHSEED", "TF_CPP_MIN_LOG_LEVEL")}
    print(load_line("start"))
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        make_data(work, sides["after"], args.posters, env)
        runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
        floor: dict[str, list[tuple[float, float]]] = {"bare": [], "tensorflow": []}
        for _ in range(args.repeats):
            for name, code in (("bare", "pass"), ("tensorflow", "import tensorflow")):
                floor[name].append(timed([sys.executable, "-c", code], work, env))
            for entry in entries:
                for side, postergenre in sides.items():
                    command = entry_commands(work, side)[entry]
                    runs.setdefault((entry, side), []).append(
                        timed([postergenre, *command], work, env))

    def median(values: list[tuple[float, float]], i: int) -> float:
        return statistics.median(v[i] for v in values)

    for entry in entries:
        print(f"{entry}: " + ", ".join(
            f"{side} {median(runs[entry, side], 0):.2f} s CPU / {median(runs[entry, side], 1):.1f}"
            f" s wall" for side in sides))
    print(load_line("end"))
    tf_entries = [e for e in entries if e in TENSORFLOW_ENTRIES]

    def total(side: str, i: int) -> float:
        return sum(median(runs[entry, side], i) for entry in entries)

    before = (f"before {total('before', 0):.1f} s CPU; wall {total('after', 1):.1f} s vs "
              f"{total('before', 1):.1f} s" if "before" in sides
              else f"wall {total('after', 1):.1f} s")
    each = ", ".join(f"{entry} {median(runs[entry, 'after'], 0):.2f}" for entry in entries)
    closing_lines(
        "startup",
        f"bare python {median(floor['bare'], 0):.2f} s CPU; python + import tensorflow "
        f"{median(floor['tensorflow'], 0):.2f} s CPU ({median(floor['tensorflow'], 1):.1f} s "
        f"wall), the floor of each entry that scores with TensorFlow "
        f"({', '.join(tf_entries) or 'none measured'}: "
        f"{len(tf_entries) * median(floor['tensorflow'], 0):.1f} s CPU together)",
        f"{total('after', 0):.1f} s CPU for {', '.join(entries)} ({before}; {args.posters} "
        f"posters, median of {args.repeats}), each in s CPU: {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
