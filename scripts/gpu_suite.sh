#!/usr/bin/env bash
# The GPU suite (scripts/gpu_suite.py): install the carried wheels without a network, then run every step time-boxed.
#
#   bash scripts/gpu_suite.sh OUT_DIR                  # on the GPU machine, with the bundle carried in .whl/
#   bash scripts/gpu_suite.sh --smoke OUT_DIR          # CPU rehearsal at tiny sizes; installs nothing
#   bash scripts/gpu_suite.sh --smoke --wheels .whl OUT_DIR   # rehearsal of the install too (a Python 3.12 like the GPU's)
#
# Wheels (bash scripts/make_gpu_bundle.sh .whl) go to a fresh folder put first on PYTHONPATH; the interpreter is
# $PYTHON (default python3). Options after OUT_DIR are passed to gpu_suite.py (e.g. --budget-s 300).
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=""
wheels=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke="--smoke"; shift ;;
    --wheels) wheels="${2:?--wheels needs a folder}"; shift 2 ;;
    -*) echo "error: unknown option $1; usage: gpu_suite.sh [--smoke] [--wheels DIR] OUT_DIR" >&2; exit 2 ;;
    *) break ;;
  esac
done
out="${1:-}"
if [ -z "$out" ]; then
  echo "error: gpu_suite.sh needs OUT_DIR; usage: gpu_suite.sh [--smoke] [--wheels DIR] OUT_DIR" >&2
  exit 2
fi
shift
python="${PYTHON:-python3}"
# On the GPU machine the bundle in .whl is installed; a smoke run installs only what --wheels names. Without the
# bundle a GPU run still goes on (device time is scarce): the Pallas and WKV steps need none of it.
if [ -z "$wheels" ] && [ -z "$smoke" ]; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    wheels=".whl"
  else
    echo "warning: no wheels in .whl (bash scripts/make_gpu_bundle.sh .whl, then carry .whl): SMAX and MJX steps will fail" >&2
  fi
fi
if [ -n "$wheels" ]; then
  if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "error: no wheels in $wheels (make them with: bash scripts/make_gpu_bundle.sh $wheels)" >&2
    exit 2
  fi
  site="$(mktemp -d "${TMPDIR:-/tmp}/jax_mat_site.XXXXXX")"
  start=$(date +%s)
  if ! "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "$wheels"/*.whl; then
    echo "error: installing the wheels in $wheels into $site failed" >&2
    exit 1
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site in $(( $(date +%s) - start )) s"
fi
exec "$python" scripts/gpu_suite.py $smoke "$out" "$@"
