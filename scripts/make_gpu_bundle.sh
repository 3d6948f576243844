#!/usr/bin/env bash
# The wheels the lent GPU machine lacks, for its Python 3.12 on manylinux x86-64, in DIR (default .whl), with
# DIR/manifest.txt; fails with one error line if they come to more than 60 MiB. See scripts/gpu_bundle.py.
#
#   bash scripts/make_gpu_bundle.sh .whl      # then carry .whl to the GPU machine (ignored by git: see below)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.whl}"
# Keep the bundle out of git: the device tool carries ignored folders only when asked to.
if [ -d .git ] || [ -f .git ]; then
  exclude="$(git rev-parse --git-path info/exclude)"
  case "$dir" in /*) ;; *) grep -qxF "/${dir%/}/" "$exclude" 2>/dev/null || echo "/${dir%/}/" >> "$exclude" ;; esac
fi
exec python3 scripts/gpu_bundle.py "$dir" "${@:2}"
