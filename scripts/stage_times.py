"""Seconds per stage of `make run`: wall and CPU time of each step, as a Markdown table.

Runs what `make run` runs, one step at a time, in the current folder (a clone with its
.venv installed: `make install`): the demo data (`postergenre ingest --source demo`, then
`dvc add`), then every stage of dvc.yaml in the order `dvc repro` runs them, each by
`dvc repro --force --single-item` so it runs whatever dvc.lock holds, then `make summary`.
CPU time is the whole process tree's (user + system of every child, read after it exits).
Comparing two commits: run it in a fresh clone of each, side by side, and compare the CPU
columns (wall time depends on what else runs).

    .venv/bin/python scripts/stage_times.py > stages.md
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of `command`, which must succeed."""
    cpu, wall = _children_cpu(), time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - wall, _children_cpu() - cpu


def stage_order(env: dict[str, str]) -> list[str]:
    """The stages in the order `dvc repro` runs them (its dry run names each)."""
    dry = subprocess.run(["dvc", "repro", "--dry", "--force"], check=True, env=env,
                         capture_output=True, text=True).stdout
    return re.findall(r"Running stage '([^']+)'", dry)


def main() -> int:
    if not Path("dvc.yaml").is_file() or not Path(".venv/bin/postergenre").is_file():
        print("stage_times: run it in a clone with dvc.yaml and .venv (make install)",
              file=sys.stderr)
        return 2
    env = dict(os.environ, PATH=f"{Path('.venv/bin').resolve()}:{os.environ['PATH']}")
    steps = [("ingest (demo data)", ["postergenre", "ingest", "--source", "demo",
                                      "--out", "data"]),
             ("dvc add data", ["dvc", "add", "-q", "data"])]
    steps += [(name, ["dvc", "repro", "-q", "--force", "--single-item", name])
              for name in stage_order(env)]
    steps.append(("summary", ["make", "-s", "summary"]))
    print("| step | wall s | CPU s |\n|---|---:|---:|")
    total_wall = total_cpu = 0.0
    for name, command in steps:
        wall, cpu = timed(command, env)
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |", flush=True)
    print(f"| total | {total_wall:.1f} | {total_cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
