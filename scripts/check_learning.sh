#!/usr/bin/env bash
# The slow learning checks (issue 3): MAT on SMAX 3m (>= 0.9 greedy win rate within 1M steps) and
# 2s3z (>= 0.8 within 3M), seed 0. Prints each run's eval.json; exits non-zero if a check fails.
# Takes roughly 10 + 40 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -m slow tests/test_learning.py -s -p no:cacheprovider "$@"
