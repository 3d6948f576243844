"""End-to-end training on SMAX: the CLI, checkpoints, resume after SIGKILL, seeds under vmap, bad input."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import yaml

from jax_mat import config as config_lib
from jax_mat import train
from jax_mat.training import sweep
from jax_mat.training.checkpoint import Checkpointer
from jax_mat.training.runner import Trainer, make_trainer
from jax_mat.versions import package_versions
from tests.run_dirs import truncate_arrays

REPO = pathlib.Path(__file__).resolve().parents[1]
# 4 envs x 8 steps per update, one epoch: tiny but the full program.
TINY = ["train.n_envs=4", "train.episode_length=8", "algo.ppo_epochs=2", "algo.num_mini_batch=2",
        "train.eval_episodes=2", "train.checkpoint_every=1", "algo.n_embd=16"]


def _tiny(updates: int, *extra: str) -> list[str]:
    return TINY + [f"train.total_steps={updates * 32}", *extra]


def _params_of(run_dir):
    trainer = make_trainer(config_lib.config_from_file(os.path.join(run_dir, "config.yaml")))
    ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"))
    try:
        return ckpt.restore(sweep.state_template(trainer)).params
    finally:
        ckpt.close()


def test_cli_writes_a_complete_run_directory(tmp_path, capfd):
    run_dir = tmp_path / "run"
    assert train.main([*_tiny(3), "train.eval_every=2", "--run-dir", str(run_dir), "--no-progress"]) == 0
    out = capfd.readouterr().out
    assert "win rate" in out and str(run_dir) in out
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["versions"] == package_versions() and saved["versions"]["jaxmarl"] != "not installed"
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["episodes"] == 2 and 0.0 <= results["win_rate"] <= 1.0
    assert results["versions"] == package_versions()
    assert any(f.name.startswith("events.out.tfevents") for f in (run_dir / "tb").iterdir())
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    training = [x for x in lines if "loss/total" in x]
    assert [x["env_steps"] for x in training] == [32, 64, 96]
    # The periodic evaluation after update 2 and the final one, as eval/ lines.
    assert [x["env_steps"] for x in lines if "eval/win_rate" in x] == [64, 96]
    assert Checkpointer(run_dir / "checkpoints").latest_step() == 3

    # Periodic evaluation, the best parameters and the absolute metric (10x the episodes).
    records = [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert [(r["update"], r["env_steps"], r["seed"], r["greedy"]) for r in records] == [(2, 64, 0, True)]
    assert len(records[0]["episode_return"]) == len(records[0]["episode_won"]) == 2
    assert records[0]["win_rate"] == pytest.approx(np.mean(records[0]["episode_won"]))
    assert json.loads((run_dir / "best.json").read_text())["updates"] == [2]
    absolute = results["absolute"]
    assert absolute["episodes"] == 20 and absolute["update"] == 2 and absolute["deterministic"] is True
    marl_eval = json.loads((run_dir / "marl_eval.json").read_text())
    run = marl_eval["smax"]["3m"]["mat"]["run_0"]
    assert sorted(run) == ["absolute_metrics", "step_0"]
    assert run["step_0"]["step_count"] == 64 and run["step_0"]["return"] == records[0]["episode_return"]
    assert len(run["absolute_metrics"]["return"]) == len(run["absolute_metrics"]["win_rate"]) == 20
    from jax_mat import evaluate
    # By default the evaluation command replays eval.json's episodes on the checkpoint they were played from.
    again = evaluate.evaluate_run(str(run_dir))
    assert again["checkpoint_update"] == 3
    assert {k: again[k] for k in ("episodes", "win_rate", "mean_return", "mean_length")} == {
        k: results[k] for k in ("episodes", "win_rate", "mean_return", "mean_length")}
    assert evaluate.main([str(run_dir), "--episodes", "3"]) == 0
    assert "checkpoint update 3: 3 greedy episodes" in capfd.readouterr().out
    assert evaluate.main([str(run_dir), "--episodes", "3", "--stochastic"]) == 0
    assert "checkpoint update 3: 3 sampled episodes" in capfd.readouterr().out


def test_resume_after_sigkill_equals_straight_run(tmp_path):
    updates = 6
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    argv = [*_tiny(updates), "train.eval_every=2"]
    assert train.main([*argv, "--run-dir", str(straight), "--no-progress"]) == 0

    cmd = [sys.executable, "-m", "jax_mat.train", *argv, "--run-dir", str(killed), "--no-progress"]
    # Share this process's persistent compilation cache (tests/conftest.py) with the child.
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Killed once checkpoint 2 is complete, however long compiling takes (pytest-timeout bounds a hang).
        ckpt_dir = killed / "checkpoints"
        while not (ckpt_dir.is_dir() and any(p.name.isdigit() and int(p.name) >= 2 for p in ckpt_dir.iterdir())):
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    last = Checkpointer(killed / "checkpoints").latest_step()
    assert last is not None and last < updates, f"the kill came too late (checkpoint {last})"
    assert not (killed / "eval.json").exists()

    assert train.main(["--resume", str(killed), "--no-progress"]) == 0
    a, b = _params_of(straight), _params_of(killed)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # The evaluations after the last checkpoint ran again, once; the best parameters and absolute metric agree.
    # config.yaml too: a resume without overrides leaves it as the run wrote it.
    for name in ("evaluations.jsonl", "best.json", "config.yaml"):
        assert (killed / name).read_text() == (straight / name).read_text(), name
    # metrics.jsonl holds every update once: what the killed run logged after its checkpoint was dropped.
    logged = [[{k: v for k, v in json.loads(x).items() if not k.startswith("perf/")}
               for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (straight, killed)]
    assert logged[0] == logged[1]
    absolute = [json.loads((d / "eval.json").read_text())["absolute"] for d in (straight, killed)]
    assert absolute[0] == absolute[1]


@pytest.mark.timeout(600)
def test_vmapped_seeds_equal_single_seed_runs():
    trainer = make_trainer(config_lib.load_config(None, _tiny(2)))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states, metrics = jax.jit(jax.vmap(trainer.train))(keys)
    assert metrics["loss/total"].shape == (2, 2)
    single, _ = jax.jit(trainer.train)(keys[1])
    for x, y in zip(jax.tree.leaves(states.params), jax.tree.leaves(single.params)):
        np.testing.assert_allclose(x[1], y, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # default-suite time on the 2-core CI machine; run by scripts/check_slow_tests.sh
def test_cli_seed_sweep_equals_single_seed_runs_and_logs_each_seed(tmp_path, capfd):
    sweep_dir, single_dir = tmp_path / "sweep", tmp_path / "single"
    every = "train.eval_every=1"
    assert train.main([*_tiny(2), every, "seed=5", "--seeds", "2", "--run-dir", str(sweep_dir), "--no-progress"]) == 0
    assert train.main([*_tiny(2), every, "seed=6", "--run-dir", str(single_dir), "--no-progress"]) == 0
    swept, single = _params_of(sweep_dir), _params_of(single_dir)
    for x, y in zip(jax.tree.leaves(swept), jax.tree.leaves(single)):
        assert x.shape == (2, *y.shape)
        np.testing.assert_allclose(x[1], y, rtol=1e-5, atol=1e-6)  # seed index 1 of base 5 is seed 6
    assert sorted(p.name for p in (sweep_dir / "tb").iterdir()) == ["aggregate", "seed_0", "seed_1"]
    lines = [json.loads(x) for x in (sweep_dir / "metrics.jsonl").read_text().splitlines()]
    lines = [x for x in lines if "loss/total" in x]
    assert [(x["env_steps"], x["seed"]) for x in lines] == [(32, 0), (32, 1), (64, 0), (64, 1)]
    results = json.loads((sweep_dir / "eval.json").read_text())
    single_results = json.loads((single_dir / "eval.json").read_text())
    # Every seed is evaluated periodically, and seed 1 of the sweep exactly as the single run with its seed.
    sweep_records = [json.loads(x) for x in (sweep_dir / "evaluations.jsonl").read_text().splitlines()]
    single_records = [json.loads(x) for x in (single_dir / "evaluations.jsonl").read_text().splitlines()]
    assert [(r["update"], r["seed"]) for r in sweep_records] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    np.testing.assert_allclose([r["episode_return"] for r in sweep_records if r["seed"] == 1],
                               [r["episode_return"] for r in single_records], atol=1e-5)
    assert len(results["absolute"]["per_seed"]) == 2
    assert results["seeds"] == 2 and len(results["per_seed"]) == 2
    assert results["per_seed"][1]["mean_return"] == pytest.approx(single_results["mean_return"], abs=1e-5)
    stats = results["statistics"]["mean_return"]
    assert stats["mean"] == pytest.approx(np.mean([r["mean_return"] for r in results["per_seed"]]))
    from jax_mat import evaluate
    assert evaluate.main([str(sweep_dir), "--episodes", "2"]) == 0
    assert "2 greedy episodes (mean over 2 seeds)" in capfd.readouterr().out
    # A sweep resumes (and extends) like a single run; its seeds cannot change.
    assert train.main(["--resume", str(sweep_dir), "train.total_steps=96", "--no-progress"]) == 0
    assert json.loads((sweep_dir / "eval.json").read_text())["updates"] == 3
    assert train.main(["--resume", str(sweep_dir), "--seeds", "3", "--no-progress"]) == 2


def test_interquartile_mean_and_statistics_ignore_nan_seeds():
    assert sweep.interquartile_mean([1.0, 2.0, 3.0, 4.0, 100.0, -50.0, 2.5, 3.5]) == pytest.approx(2.75)
    stats = sweep.statistics([1.0, float("nan"), 3.0])
    assert stats == {"mean": 2.0, "std": 1.0, "iqm": 2.0}
    assert all(np.isnan(v) for v in sweep.statistics([float("nan")]).values())


@pytest.mark.parametrize("argv, message", [
    (["env.map=MMM3"], "unknown SMAX map 'MMM3'"),
    (["env.map=MMM2"], "medivac"),
    (["algo=ppo_lstm"], "ppo_lstm"),
    (["algo.lrr=1e-3"], "did you mean 'algo.lr'"),
    (["algo.lr=-1"], "algo.lr"),
    (["algo.clip=0"], "algo.clip"),
    (["train.n_envs=3", "algo.num_mini_batch=7"], "divisible"),
    (["--resume", "/nonexistent/run"], "no run directory"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["algo=happo", "algo.share_actor=true"], "algo.share_actor applies to mat_dec only"),
])
def test_bad_input_is_refused_before_anything_is_built(tmp_path, argv, message):
    """What the command line checks first (``train.prepare``): every mistake is a ValueError, nothing is written."""
    run_dir = tmp_path / "run"
    extra = [] if "--resume" in argv else ["--run-dir", str(run_dir)]
    with pytest.raises(ValueError) as err:
        train.prepare(train.parse_args([*argv, *extra, "--no-progress"]))
    assert message in str(err.value)
    assert not run_dir.exists()


def _refuse_building(monkeypatch):
    """Makes building or initialising a trainer fail the test: a bad input must stop the CLI before either."""
    from jax_mat.training import runner

    def built(*args, **kwargs):
        raise AssertionError("the CLI built a trainer for bad input")

    monkeypatch.setattr(runner, "make_trainer", built)
    monkeypatch.setattr(Trainer, "init", built)


def test_bad_input_exits_2_with_one_error_line_and_builds_and_writes_nothing(tmp_path, capfd, monkeypatch):
    _refuse_building(monkeypatch)
    run_dir = tmp_path / "run"
    assert train.main(["env.map=MMM3", "--run-dir", str(run_dir), "--no-progress"]) == 2
    captured = capfd.readouterr()
    assert captured.err.splitlines() == [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(captured.err.splitlines()) == 1 and "unknown SMAX map 'MMM3'" in captured.err
    assert captured.out == "" and not run_dir.exists()


def test_resume_skips_a_damaged_latest_checkpoint_and_tells_mismatches_apart(tmp_path, capfd):
    run_dir = tmp_path / "run"
    assert train.main([*_tiny(2), "train.eval_every=1", "--run-dir", str(run_dir), "--no-progress"]) == 0
    capfd.readouterr()
    # Another network shape is a mismatch, named as one.
    assert train.main(["--resume", str(run_dir), "algo.n_embd=32", "--no-progress"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: checkpoint 2 in") and "does not fit" in err and "in the checkpoint but" in err
    # The latest checkpoint's arrays truncated on disk: the run goes on from checkpoint 1, saves update 2
    # again and finishes; the damaged folder is kept beside it, out of orbax's way.
    truncate_arrays(run_dir / "checkpoints" / "2")
    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 0
    (warning,) = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert "checkpoint 2 in" in warning and "damaged" in warning and "using checkpoint 1 instead" in warning
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names[:2] == ["1", "2"] and len(names) == 3 and names[2].startswith("2.damaged-"), names
    assert f"kept as {run_dir / 'checkpoints' / names[2]}" in warning
    assert jax.tree.leaves(_params_of(run_dir))  # the new checkpoint 2 restores
    assert json.loads((run_dir / "eval.json").read_text())["updates"] == 2
    # Nothing readable: one error line.
    for step in ("1", "2"):
        truncate_arrays(run_dir / "checkpoints" / step)
    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line.startswith("error: no checkpoint in") and "all are damaged" in line
    # A directory that is not a run.
    (tmp_path / "empty").mkdir()
    assert train.main(["--resume", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "not a jax_mat run" in capfd.readouterr().err


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, capfd, monkeypatch):
    original = Trainer.update

    def poisoned(self, state):
        new_state, metrics = original(self, state)
        metrics["loss/total"] = jax.numpy.where(new_state.num_updates >= 2, jax.numpy.nan, metrics["loss/total"])
        return new_state, metrics

    monkeypatch.setattr(Trainer, "update", poisoned)
    run_dir = tmp_path / "run"
    assert train.main([*_tiny(4), "--run-dir", str(run_dir), "--no-progress"]) == 1
    err = capfd.readouterr().err
    assert "NaN/inf in the loss at update 2" in err and "update 1" in err
    assert Checkpointer(run_dir / "checkpoints").latest_step() == 1
    assert not (run_dir / "eval.json").exists()


def test_a_resumed_logger_drops_what_the_interrupted_run_logged_after_its_checkpoint(tmp_path):
    from jax_mat.training.logging import RunLogger
    from jax_mat.training.run_dir import RunDir

    run = RunDir(str(tmp_path))
    os.makedirs(tmp_path / "tb", exist_ok=True)
    with open(run.metrics, "w") as f:
        for steps in (32, 64, 64, 96, 128):  # update 2's training line and its evaluation line both at 64
            f.write(json.dumps({"env_steps": steps, "loss/total": float(steps)}) + "\n")
    logger = RunLogger(str(tmp_path), total_steps=160, initial_steps=64, progress=False)
    logger.log(96, [{"loss/total": -1.0}], steps_per_s=1.0)
    logger.close()
    logged = [json.loads(x) for x in open(run.metrics).read().splitlines()]
    assert [(x["env_steps"], x["loss/total"]) for x in logged] == [(32, 32.0), (64, 64.0), (64, 64.0), (96, -1.0)]
