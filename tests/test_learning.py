"""Learning checks (slow; run by scripts/check_learning.sh, not by CI).

Each trains with the CLI exactly as a user would and asserts the greedy
evaluation written to ``eval.json``.
"""

import json

import pytest

from jax_mat import train

CHECKS = [
    # (experiment config, extra overrides, minimum greedy win rate), seed 0.
    ("smax_3m", [], 0.9),                  # issue 3: MAT, 1M env steps
    ("smax_2s3z", [], 0.8),                # issue 3: MAT, 3M env steps
    ("smax_3m", ["algo=marwkv"], 0.9),     # issue 4: MARWKV v4 (lr 1e-3), 1M env steps
    ("smax_3m", ["algo=mat_rwkv"], 0.9),   # issue 4: MAT encoder + RWKV decoder, 1M env steps
    ("smax_3m", ["algo=mappo"], 0.8),      # issue 6: MAPPO, 1M env steps
    ("smax_3m", ["algo=happo"], 0.8),      # issue 6: HAPPO, 1M env steps
    ("smax_3m", ["algo=mat_dec"], 0.8),    # issue 6: MAT-Dec, 1M env steps
    ("smac_standin_3m", [], 0.8),          # issue 8: MAT through the SMAC host bridge (SMAX 3m stand-in), 1M
]


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("experiment, extra, min_win_rate", CHECKS,
                         ids=["-".join([c[0], *c[1]]) for c in CHECKS])
def test_learns_smax(tmp_path, experiment, extra, min_win_rate):
    run_dir = tmp_path / "run"
    assert train.main([experiment, *extra, "seed=0", "--run-dir", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "eval.json").read_text())
    print(f"{experiment}: {results}")
    assert results["win_rate"] >= min_win_rate, results


MUJOCO_CHECKS = [
    # (overrides of the CPU-sized HalfCheetah 6x1 config, minimum mean greedy return), MAT, seed 0, 2M env steps.
    ([], 1000.0),                                # issue 5: all six joints
    (["env.disabled_joints=[bthigh]"], 1000.0),  # issue 5: the back thigh gives no torque
]


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("extra, min_return", MUJOCO_CHECKS, ids=["intact", "no_bthigh"])
def test_learns_halfcheetah(tmp_path, extra, min_return):
    run_dir = tmp_path / "run"
    assert train.main(["mujoco_halfcheetah_6x1_cpu", *extra, "seed=0", "--run-dir", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "eval.json").read_text())
    print(f"halfcheetah_6x1 {extra}: {results}")
    assert results["env_steps"] <= 2_000_000 and results["mean_return"] >= min_return, results


BASELINE_MUJOCO_CHECKS = [
    # (algorithm, env steps): issue 6 asks for an evaluation return >= 500 above the start within 1M steps; the
    # freshly initialised greedy policies score about -0.4 (their mean actions are close to zero), so
    # 500 is the bar. 400k steps were enough in the recorded runs (docs/results.md).
    ("mappo", 400_000),
    ("happo", 400_000),
    ("mat_dec", 400_000),
]


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("algo, steps", BASELINE_MUJOCO_CHECKS, ids=[c[0] for c in BASELINE_MUJOCO_CHECKS])
def test_baselines_learn_halfcheetah(tmp_path, algo, steps):
    run_dir = tmp_path / "run"
    assert train.main(["mujoco_halfcheetah_6x1_cpu", f"algo={algo}", f"train.total_steps={steps}", "seed=0",
                       "--run-dir", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "eval.json").read_text())
    print(f"halfcheetah_6x1 {algo}: {results}")
    assert results["env_steps"] <= 1_000_000 and results["mean_return"] >= 500.0, results
