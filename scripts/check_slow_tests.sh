#!/usr/bin/env bash
# The heavy integration tests kept out of the default suite for CI time (marked slow, outside the learning
# checks): CLI runs on MuJoCo and multi-map SMAX, a CLI seed sweep, seeds over devices, 4 devices against 1, a 1 -> 4 device
# resume, two jax.distributed processes, compare.py + plot_results.py on tiny runs, the parity script on
# other shapes, the slow MuJoCo robot/RWKV checks, a wheel built, installed into a fresh venv and run from
# another directory (tests/test_package.py) and the few-shot resume (tests/test_finetune.py). Roughly 25 minutes
# on a 2-core CPU. Select some with -k.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -m slow --ignore tests/test_learning.py -p no:cacheprovider -n 0 "$@"
