"""Benchmark: model quality on real posters, end to end.

Runs the real-poster settings (params-real.yaml) through every stage on the 4,000
MovieLens posters of ../shared/data/posters-movielens, in place (scripts/run_on_posters.sh,
what `make real` runs), into a temporary folder; then prints each model's metrics at the
served operating point beside the baselines, with the paired bootstrap intervals of mAP,
and the wall and CPU time on this machine (the whole process tree). The ceiling line is
the parallel bound of that work: its CPU time spread over every core. The last line
gives the transfer model's mAP against the linear probe on the same backbone's features
(a strong, cheap reference), bench/measure.py's `closing_lines`:

    ceiling: N cores: the run's C CPU-min take at least W min wall; it took ...
    quality: X mAP, the transfer model NAME, vs Y for the linear probe (Z x), ...

    .venv/bin/python bench/quality.py [--data DIR] [--params FILE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import closing_lines, load_line, measure  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "posters-movielens"
COLUMNS = ("map_macro", "f1_macro", "f1_micro", "top_class", "hamming_loss",
           "genres_per_movie")


def models_of(overlay: Path) -> dict[str, str]:
    """{name: kind} of the run's models, as `postergenre models` lists them."""
    listed = subprocess.run([str(Path(sys.executable).parent / "postergenre"), "models",
                             "--params", str(REPO / "params.yaml"), "--params", str(overlay)],
                            check=True, capture_output=True, text=True).stdout
    return dict(line.split()[:2] for line in listed.splitlines() if line.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--params", type=Path, default=REPO / "params-real.yaml",
                        help="the overlay over params.yaml (default: params-real.yaml)")
    parser.add_argument("--split", type=Path, default=None, help="a given imdb_id,split CSV")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the run here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if not (args.data / "labels.csv").is_file():
        print(f"quality: skipped: {args.data}/labels.csv not found (../shared/data is not "
              "on this machine)")
        return 0
    kinds = models_of(args.params)
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ['PATH']}"}
    with open(args.data / "labels.csv", newline="") as handle:
        posters = sum(1 for _ in csv.DictReader(handle))
    given = ["--set", f"split.assignment={args.split.resolve()}"] if args.split else []
    print(load_line("start"), flush=True)
    run = measure(lambda: subprocess.run(
        [str(REPO / "scripts" / "run_on_posters.sh"), str(args.data), str(out),
         "--params", str(REPO / "params.yaml"), "--params", str(args.params), *given],
        check=True, env=env, stdout=subprocess.DEVNULL), tree=True)
    metrics = json.loads((out / "reports" / "metrics.json").read_text())
    # The test split's size is in the full metrics (metrics.json keeps the compared few).
    examples = json.loads((out / "reports" / "metrics_all.json").read_text())["null"].get(
        "examples")
    intervals = json.loads((out / "reports" / "bootstrap.json").read_text())["intervals"]
    blessing = json.loads((out / "reports" / "blessing.json").read_text())
    if args.keep is None:
        shutil.rmtree(out)

    print(f"{args.data.name} test split, {examples} movies; "
          f"served thresholds (validation); {os.cpu_count()} CPU cores; "
          f"{posters} posters in all; every stage, {len(kinds)} models")
    print(f"{'model':<22} " + " ".join(f"{c:>16}" for c in COLUMNS) + "   mAP interval")
    for name, values in metrics.items():
        ci = intervals.get(name, {}).get("map_macro", {})
        cells = " ".join(f"{values.get(c, float('nan')):>16.3f}" for c in COLUMNS)
        interval = (f"[{ci['low']:.3f}, {ci['high']:.3f}]" if ci.get("low") is not None
                    else "")
        kind = kinds.get(name, "baseline")
        print(f"{name + ' (' + kind + ')':<22.22} {cells}   {interval}")
    print(f"gate: {blessing['decision']} {blessing['model'] or ''}".rstrip())
    transfer = [n for n, k in kinds.items() if k == "transfer"]
    probe = [n for n, k in kinds.items() if k == "linear_probe"]
    if not transfer or not probe:
        print("quality: the params file needs a transfer model and a linear_probe model")
        return 1
    best = max(transfer, key=lambda n: metrics[n]["map_macro"])
    t, p = metrics[best]["map_macro"], metrics[probe[0]]["map_macro"]
    ci = intervals.get(best, {}).get("map_macro", {})
    interval = (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci.get("low") is not None else "")
    print(load_line("end"))
    cores = len(os.sched_getaffinity(0))
    closing_lines(
        "quality",
        f"{cores} cores: the run's {run.cpu_s / 60:.1f} CPU-min take at least "
        f"{run.cpu_s / cores / 60:.1f} min wall; it took {run.wall_s / 60:.1f} min "
        f"({run.cpu_s / run.wall_s / cores:.0%} of the cores busy)",
        f"{t:.3f} mAP, the transfer model {best}{interval}, vs {p:.3f} for the linear probe "
        f"{probe[0]} ({t / p:.2f}x); {run.wall_s / 60:.1f} min wall, {run.cpu_s / 60:.1f} "
        f"min CPU ({1000 * run.cpu_s / posters:.0f} ms CPU per poster, every stage)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
