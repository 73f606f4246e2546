"""Benchmark: model quality on real posters, end to end.

Runs the real-poster settings (params-real.yaml) through every stage on the 4,000
MovieLens posters of ../shared/data/posters-movielens, in place (scripts/run_on_posters.sh,
what `make real` runs), into a temporary folder; then prints each model's metrics at the
served operating point beside the baselines, with the paired bootstrap intervals of mAP,
and the wall and CPU time on this machine (the whole process tree), and what training
chose on validation (mirror averaging, the probe's backbones). The ceiling line is the
parallel bound of that work: its CPU time spread over every core. The last line gives the
served model (the gate's blessed one, else the best trained) against
`evaluate.reference_model` (params-real.yaml: lite0_transfer), with bootstrap.json's
paired intervals, through bench/measure.py's `closing_lines`:

    ceiling: N cores: the run's C CPU-min take at least W min wall; it took ...
    quality: X mAP, NAME (blessed) [low, high]; against REFERENCE (paired): map_macro
      +d [low, high], f1_macro ..., f1_micro ...; ... min wall, ... min CPU (...)

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
    bootstrap = json.loads((out / "reports" / "bootstrap.json").read_text())
    intervals = bootstrap["intervals"]
    blessing = json.loads((out / "reports" / "blessing.json").read_text())
    # What training chose on validation: each model's mirror averaging (and the probe's
    # backbone set), from its training.json.
    chosen = {name: json.loads((out / "outputs" / "models" / name / "training.json")
                               .read_text()) for name in kinds}
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
    for name, training in chosen.items():
        mirror = training.get("test_time_mirror") or {}
        maps = mirror.get("validation_map")
        print(f"{name}: mirror averaging {'used' if mirror.get('used') else 'not used'}"
              + (f" (validation mAP {maps['plain']:.3f} plain, {maps['mirrored']:.3f} "
                 "mirrored)" if maps else "")
              + (f"; backbones {'+'.join(training['backbones'])}"
                 if training.get("backbones") else ""))
    served = blessing["model"] or max(kinds, key=lambda n: metrics[n]["map_macro"])
    ci = intervals.get(served, {}).get("map_macro", {})
    interval = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci.get("low") is not None else ""
    reference = bootstrap["versus"]["model"]
    paired = bootstrap["versus"]["differences"].get(served)
    against = (f"against {reference} (paired): " + ", ".join(
        f"{key} {paired[key]['estimate']:+.3f} [{paired[key]['low']:+.3f}, "
        f"{paired[key]['high']:+.3f}]" for key in ("map_macro", "f1_macro", "f1_micro"))
        if paired else f"it is the reference model {reference}")
    print(load_line("end"))
    cores = len(os.sched_getaffinity(0))
    closing_lines(
        "quality",
        f"{cores} cores: the run's {run.cpu_s / 60:.1f} CPU-min take at least "
        f"{run.cpu_s / cores / 60:.1f} min wall; it took {run.wall_s / 60:.1f} min "
        f"({run.cpu_s / run.wall_s / cores:.0%} of the cores busy)",
        f"{metrics[served]['map_macro']:.3f} mAP, {served} "
        f"({'blessed' if blessing['model'] else 'none blessed: the best trained'})"
        f"{interval}; {against}; {run.wall_s / 60:.1f} min wall, {run.cpu_s / 60:.1f} min "
        f"CPU ({1000 * run.cpu_s / posters:.0f} ms CPU per poster, every stage)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
