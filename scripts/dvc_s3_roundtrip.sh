#!/usr/bin/env bash
# Version a poster data set on an S3 remote with DVC and prove the round trip:
#   dvc add DATA -> dvc push -> fresh git clone -> dvc pull -> identical files.
#
# Usage (from the project's root, a git repo with DVC initialised):
#   DVC_REMOTE_URL=s3://my-bucket/postergenre scripts/dvc_s3_roundtrip.sh [DATA_DIR]
#
# Environment:
#   DVC_REMOTE_URL           the remote (s3://bucket/path); default: the repo's default remote
#   DVC_REMOTE_ENDPOINT_URL  an S3-compatible endpoint (MinIO, Ceph, moto); optional
#   DVC_REMOTE_NAME          remote name (default: storage)
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) or AWS_PROFILE:
#                            read by DVC's S3 client; this script never writes them anywhere.
# The remote's URL and endpoint go in .dvc/config.local (not committed), so a clone of the
# repo does not inherit a developer's endpoint; commit `dvc remote add -d` yourself for a
# shared default.
set -euo pipefail

DATA=${1:-data}
REMOTE=${DVC_REMOTE_NAME:-storage}
DVC=${DVC:-dvc}
ROOT=$(git rev-parse --show-toplevel)
cd "$ROOT"

if [[ -n "${DVC_REMOTE_URL:-}" ]]; then
  $DVC remote add --local -f -d "$REMOTE" "$DVC_REMOTE_URL"
  if [[ -n "${DVC_REMOTE_ENDPOINT_URL:-}" ]]; then
    $DVC remote modify --local "$REMOTE" endpointurl "$DVC_REMOTE_ENDPOINT_URL"
  fi
fi

echo "== dvc add $DATA"
$DVC add -q "$DATA"
echo "== dvc push ($(cat "$DATA.dvc" | grep -m1 'md5:' | tr -d ' '))"
$DVC push -q "$DATA.dvc"

CLONE=$(mktemp -d "${TMPDIR:-/tmp}/postergenre-clone.XXXXXX")
trap 'rm -rf "$CLONE"' EXIT
echo "== fresh clone in $CLONE"
git clone -q "$ROOT" "$CLONE/repo"
# The clone gets this working tree's data.dvc (it may not be committed yet) and the
# local remote settings; nothing else travels.
cp "$DATA.dvc" "$CLONE/repo/$DATA.dvc"
if [[ -f .dvc/config.local ]]; then cp .dvc/config.local "$CLONE/repo/.dvc/config.local"; fi
(cd "$CLONE/repo" && $DVC pull -q "$DATA.dvc")

echo "== compare"
diff -r "$DATA" "$CLONE/repo/$DATA"
echo "round trip OK: $(find "$DATA" -type f | wc -l) files identical after push and pull"
