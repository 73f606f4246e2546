#!/usr/bin/env bash
# The whole pipeline on a poster folder of your own (the labels.csv layout of
# ../shared/data), into its own folder, leaving the demo run's data/ and outputs/ alone.
# It runs the stage graph of dvc.yaml itself: OUT becomes a DVC project of its own, holding
# params.yaml (the run's params files resolved by `postergenre params`) and dvc.yaml (the
# repository's, its variables pointing at DATA and this checkout's package); `dvc repro`
# runs there, so a rerun redoes only what changed. Outputs: OUT/outputs, OUT/reports,
# OUT/registry, as in the repository.
#   scripts/run_on_posters.sh DATA OUT [--params FILE ...] [--set KEY=VALUE ...]
# (what `make real` runs: --params params.yaml --params params-real.yaml)
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 DATA_DIR OUT_DIR [--params FILE ...] [--set KEY=VALUE ...]" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$1/labels.csv" ] || { echo "$1/labels.csv not found: DATA is a folder with labels.csv and the posters it names" >&2; exit 2; }
data=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
shift 2

# The run's settings, checked before anything runs (a bad value stops here).
postergenre params "$@" > "$out/params.yaml.partial"
mv "$out/params.yaml.partial" "$out/params.yaml"
if [ ! -d "$out/.dvc" ]; then
  (cd "$out" && dvc init --no-scm -q)
fi
cp "$repo/.dvcignore" "$out/.dvcignore"
mkdir -p "$out/.dvc/plots" && cp "$repo"/.dvc/plots/*.json "$out/.dvc/plots/"
python - "$repo/dvc.yaml" "$out/dvc.yaml" "$data" "$repo/src/postergenre" <<'PY'
import sys

import yaml

source, target, data, code = sys.argv[1:]
graph = yaml.safe_load(open(source, encoding="utf-8"))
graph["vars"] = [{"data": data, "data_version_from": data, "code": code}]
with open(target, "w", encoding="utf-8") as handle:
    handle.write(f"# Written by scripts/run_on_posters.sh from {source}: edit that one.\n")
    yaml.safe_dump(graph, handle, sort_keys=False)
PY
(cd "$out" && dvc repro -q) || { echo "dvc repro failed in $out (the error above); 'cd $out && dvc repro' names the stage" >&2; exit 1; }
postergenre summary --metrics "$out/reports/metrics.json" \
  --blessing "$out/reports/blessing.json" --registry "$out/registry"
