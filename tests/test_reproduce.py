"""The reproduction script (scripts/reproduce_smax.py), the marl-eval export and the statistics it reports."""

import json
import os
import sys

import numpy as np
import pytest

from jax_mat import statistics
from jax_mat.config import load_config
from jax_mat.training.evaluation import marl_eval_record, merge_marl_eval

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "scripts"))
import export_marl_eval  # noqa: E402
import reproduce_smax  # noqa: E402

TINY = ["train.n_envs=4", "train.episode_length=8", "algo.ppo_epochs=1", "train.eval_episodes=2",
        "train.checkpoint_every=1", "train.eval_every=1", "algo.n_embd=16"]


def test_per_map_configs_carry_the_papers_budgets():
    for map_name, (steps, _, _) in reproduce_smax.PAPER.items():
        assert load_config(overrides=[f"env.map={map_name}"]).train.total_steps == steps, map_name


def test_wall_time_counts_every_part_of_a_run_killed_parts_included(tmp_path):
    """A part killed with its session still counts, up to its last metrics line; a finished part counts itself."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("env: {}\n")
    (run / "metrics.jsonl").write_text("{}\n")
    os.utime(run / "config.yaml", (1000.0, 1000.0))  # the first part started at t = 1000
    os.utime(run / "metrics.jsonl", (1600.0, 1600.0))  # ... and logged last at 1600, then was killed
    reproduce_smax.start_part(str(run), now=2000.0)
    assert reproduce_smax.wall_seconds(str(run)) == 600.0
    os.utime(run / "metrics.jsonl", (2300.0, 2300.0))  # the second part was killed too, 300 s in
    reproduce_smax.start_part(str(run), now=3000.0)
    assert reproduce_smax.wall_seconds(str(run)) == 900.0
    reproduce_smax.end_part(str(run), 50.0)  # the third part finished
    assert reproduce_smax.wall_seconds(str(run)) == 950.0
    reproduce_smax.start_part(str(run), now=4000.0)  # a part after a finished one adds nothing before it
    assert reproduce_smax.wall_seconds(str(run)) == 950.0


def test_bootstrap_intervals_and_iqm():
    summary = statistics.summary([0.7, 0.8, 0.9, 1.0, float("nan")])
    assert summary["mean"] == pytest.approx(0.85) and summary["iqm"] == pytest.approx(0.85)
    assert 0.7 <= summary["ci_low"] < summary["mean"] < summary["ci_high"] <= 1.0
    assert np.isnan(statistics.summary([1.0])["ci_low"])  # one seed: no interval
    assert statistics.summary([1.0, 1.0])["ci_low"] == 1.0
    assert statistics.interquartile_mean([1.0, 2.0, 3.0, 4.0, 100.0, -50.0, 2.5, 3.5]) == pytest.approx(2.75)
    # Stratified: each task's seeds are resampled within the task.
    aggregate = statistics.aggregate_iqm([[0.9, 1.0, 0.8], [0.5, 0.6, 0.7]])
    assert aggregate["runs"] == 6 and aggregate["ci_low"] <= aggregate["iqm"] <= aggregate["ci_high"]


def test_marl_eval_records_merge_runs_of_one_task():
    evaluations = [{"seed": 0, "update": 2, "env_steps": 64, "episode_return": [1.0, 2.0], "episode_won": [0.0, 1.0]},
                   {"seed": 0, "update": 1, "env_steps": 32, "episode_return": [0.5, 0.5], "episode_won": [0.0, 0.0]}]
    record = marl_eval_record("smax", "3m", "mat", evaluations, [{"episode_return": [1.0] * 20,
                                                                   "episode_won": [1.0] * 20}], has_wins=True)
    run = record["smax"]["3m"]["mat"]["run_0"]
    assert run["step_0"] == {"step_count": 32, "return": [0.5, 0.5], "win_rate": [0.0, 0.0]}
    assert run["step_1"]["step_count"] == 64 and len(run["absolute_metrics"]["win_rate"]) == 20
    no_wins = marl_eval_record("mujoco", "halfcheetah_6x1", "mat", evaluations,
                               [{"episode_return": [1.0], "episode_won": [0.0]}], has_wins=False)
    assert "win_rate" not in no_wins["mujoco"]["halfcheetah_6x1"]["mat"]["run_0"]["step_0"]
    merged = merge_marl_eval([record, record])
    assert sorted(merged["smax"]["3m"]["mat"]) == ["run_0", "run_1"]


@pytest.mark.parametrize("argv, message", [
    (["--maps", "3m", "4m"], "unknown SMAX map '4m' in --maps"),
    (["--maps", "3m", "--algos", "matt"], "unknown algorithm 'matt'"),
    (["--maps", "3m", "--budget", "100", *TINY], "--budget 100 is not a multiple of one update on 3m"),
    (["--maps", "3m", "--budget", "lots"], "--budget must be 'paper' or a number"),
    (["--maps", "3m", "env.time_limit=smac2"], "env.time_limit must be a preset"),
    (["--maps", "3m", "--marl-eval", "/proc/nope/x.json"], "cannot write /proc/nope/x.json"),
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "repro"
    assert reproduce_smax.main([*argv, "--out", str(out), "--seeds", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not out.exists()


def test_reproduces_a_tiny_table_resumes_and_exports(tmp_path, capsys):
    out = tmp_path / "repro"
    argv = ["--maps", "3m", "--algos", "mat", "--seeds", "1", "--budget", "64", "--out", str(out), "--no-progress",
            *TINY]
    # An unfinished run is only continued with --resume.
    run_dir = out / "3m" / "mat"
    from jax_mat import train
    assert train.main(["algo=mat", "env.map=3m", *TINY, "train.total_steps=32", "--run-dir", str(run_dir),
                       "--no-progress"]) == 0
    os.remove(run_dir / "eval.json")  # as if killed before the end
    assert reproduce_smax.main(argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert reproduce_smax.main([*argv, "--resume"]) == 0
    table = (out / "results.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| 3m | mat |"))
    assert "| 32 |" in row and "| smac | greedy | 1 |" in row  # the run's own budget (it was resumed as saved)
    marl_eval = json.loads((out / "marl_eval.json").read_text())
    assert list(marl_eval["smax"]["3m"]["mat"]) == ["run_0"]
    capsys.readouterr()
    assert reproduce_smax.main([*argv, "--resume"]) == 0  # finished: not trained again
    assert "finished run" in capsys.readouterr().out
    export = tmp_path / "all.json"
    assert export_marl_eval.main([str(run_dir), str(run_dir), "--out", str(export)]) == 0
    assert sorted(json.loads(export.read_text())["smax"]["3m"]["mat"]) == ["run_0", "run_1"]
    assert export_marl_eval.main([str(tmp_path), "--out", str(export)]) == 2
