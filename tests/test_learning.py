"""Learning checks (slow; run by scripts/check_learning.sh, not by CI).

Each trains with the CLI exactly as a user would and asserts the greedy
evaluation written to ``eval.json``.
"""

import json

import pytest

from jax_mat import train

CHECKS = [
    # (experiment config, minimum greedy win rate) — issue 3's targets, seed 0.
    ("smax_3m", 0.9),    # 1M env steps
    ("smax_2s3z", 0.8),  # 3M env steps
]


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("experiment, min_win_rate", CHECKS, ids=[c[0] for c in CHECKS])
def test_mat_learns_smax(tmp_path, experiment, min_win_rate):
    run_dir = tmp_path / experiment
    assert train.main([experiment, "seed=0", "--run-dir", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "eval.json").read_text())
    print(f"{experiment}: {results}")
    assert results["win_rate"] >= min_win_rate, results
