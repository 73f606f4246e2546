#!/usr/bin/env bash
# The whole pipeline on a poster folder of your own (the labels.csv layout of
# ../shared/data), with a real-poster settings file, into its own output folder: the
# same CLI stages dvc.yaml runs, without touching the demo run's data/ or outputs/.
#   scripts/run_on_posters.sh DATA OUT PARAMS [SPLIT_CSV]     (what `make real` runs)
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 DATA_DIR OUT_DIR PARAMS_FILE [SPLIT_CSV]" >&2
  exit 2
fi
data=$1 out=$2 params=$3 split_csv=${4:-}
[ -f "$data/labels.csv" ] || { echo "$data/labels.csv not found: DATA is a folder with labels.csv and the posters it names" >&2; exit 2; }
[ -f "$params" ] || { echo "$params not found" >&2; exit 2; }
mkdir -p "$out/reports"
p=(--params "$params")
set -x
postergenre validate "${p[@]}" --data "$data" --out "$out/validated" \
  --metrics "$out/reports/validation.json" --docs "$out/reports/data_docs.html"
postergenre split "${p[@]}" --labels "$out/validated/labels.csv" --out "$out/split" \
  ${split_csv:+--assignment "$split_csv"}
postergenre augment "${p[@]}" --data "$data" --split "$out/split" --out "$out/prepared"
postergenre models "${p[@]}" | while read -r name kind _; do
  postergenre "train-$kind" "${p[@]}" --name "$name" --prepared "$out/prepared" \
    --out "$out/models/$name" --data-version "local:$data"
done
postergenre evaluate "${p[@]}" --prepared "$out/prepared" --models-root "$out/models" \
  --metrics "$out/reports/metrics.json" --per-genre "$out/reports/per_genre.json" \
  --plots "$out/reports/plots" --bootstrap "$out/reports/bootstrap.json" \
  --thresholds "$out/reports/thresholds.json" --report "$out/reports/evaluation.html" \
  --scores "$out/reports/scores" --registry "$out/registry"
postergenre gate "${p[@]}" --metrics "$out/reports/metrics.json" \
  --blessing "$out/reports/blessing.json" --per-genre "$out/reports/per_genre.json" \
  --bootstrap "$out/reports/bootstrap.json" --thresholds "$out/reports/thresholds.json" \
  --evaluation-report "$out/reports/evaluation.html" --report "$out/reports/report.html"
postergenre register "${p[@]}" --blessing "$out/reports/blessing.json" \
  --registry "$out/registry" --models-root "$out/models" --data-version "local:$data"
set +x
postergenre summary --metrics "$out/reports/metrics.json" \
  --blessing "$out/reports/blessing.json" --registry "$out/registry"
