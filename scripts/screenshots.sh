#!/usr/bin/env bash
# Screenshots of the three pages a person reads after `make run`, for the README:
# docs/report.png (reports/report.html), docs/dvc-plots.png (`make plots`'s offline DVC
# plots page) and docs/data-docs.png (great-expectations Data Docs), each drawn by
# headless Chromium at 1280 px wide with every host unreachable (the pages must draw
# offline). Run it after `make run` and `make plots` (what `make screenshots` does).
#   scripts/screenshots.sh [OUT_DIR]      (default docs)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "screenshots: chromium not found (apt-get install chromium)" >&2; exit 2; }
mkdir -p "$out"
shoot() {  # shoot PAGE PNG HEIGHT
  [ -f "$1" ] || { echo "screenshots: $1 not found (run make run, then make plots)" >&2; exit 2; }
  "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --host-resolver-rules='MAP * ~NOTFOUND' --virtual-time-budget=10000 \
    --window-size="1280,$3" --screenshot="$PWD/$2" "file://$PWD/$1" 2>/dev/null
  [ -s "$2" ] || { echo "screenshots: chromium wrote no $2" >&2; exit 1; }
  echo "wrote $2 (from $1)"
}
shoot reports/report.html "$out/report.png" 1800
shoot reports/plots-html/index.html "$out/dvc-plots.png" 1400
shoot reports/data_docs.html "$out/data-docs.png" 1200
