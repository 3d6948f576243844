"""The GPU suite (scripts/gpu_suite.sh, scripts/gpu_suite.py) rehearsed on the CPU at tiny sizes, so that it cannot
rot between visits to a GPU machine; and its time boxes: a command that fails or runs out of time never stops the
later ones."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from scripts import gpu_suite

REPO = pathlib.Path(__file__).resolve().parents[1]

STEP_KEYS = [step.key for step in gpu_suite.STEPS]


def _rows(out: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite") / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("JAX_MAT_PALLAS_INTERPRET", None)
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_suite.sh"), "--smoke", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=840)
    return done, out


def test_smoke_run_writes_few_small_files_and_one_line_per_step(smoke):
    done, out = smoke
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.log", "env.log", "learn.log", "pallas.log", "results.jsonl", "summary.txt"]
    assert all((out / f).stat().st_size < 16 * 2**20 for f in files)
    printed = [line.split()[0] for line in done.stdout.splitlines()[1:]]
    assert printed == STEP_KEYS, done.stdout
    statuses = {line.split()[0]: line.split()[1] for line in (out / "summary.txt").read_text().splitlines()[1:]}
    assert statuses == {key: "skipped" if key == "g_repro" and not (REPO / "scripts" / "reproduce_smax.py").exists()
                        else "ok" for key in STEP_KEYS}, (out / "summary.txt").read_text()
    commands = [r for r in _rows(out) if r.get("kind") == "command"]
    assert all(r["status"] == "ok" for r in commands), commands


def test_smoke_run_rehearses_every_step(smoke):
    _, out = smoke
    rows = _rows(out)
    by_step = {key: [r for r in rows if r["step"] == key and r.get("kind") != "command"] for key in STEP_KEYS}
    env = next(r for r in by_step["a_env"] if r.get("kind") == "env")
    assert env["backend"] == "cpu" and env["versions"]["jax"]
    assert next(r for r in by_step["a_env"] if r.get("kind") == "imports")["failed"] == []
    checks = [r for r in by_step["b_pallas"] if r.get("kind") == "kernel_check"]
    assert [(r["kernel"], r["works"], r["mode"]) for r in checks] == [
        ("pallas_kernels.wkv4", True, "interpret"), ("pallas_kernels.wkv6", True, "interpret")]
    tests = next(r for r in by_step["b_pallas"] if r.get("kind") == "pytest")
    assert tests["passed"] >= 3 and tests["failed"] == 0 and tests["errors"] == 0
    timed = {(r["version"], r["impl"]) for r in by_step["c_wkv"] if "fwd_bwd_ms" in r}
    assert timed == {(v, i) for v in ("v4", "v6") for i in ("scan", "chunked")}  # no GPU: Pallas checked, not timed
    assert all(r["copy_gb_per_s"] > 0 for r in by_step["c_wkv"] if "fwd_bwd_ms" in r)
    train = by_step["d_train"]
    assert [r["status"] for r in train] == ["ok", "built", "built", "built", "built"]
    assert train[0]["train_env_steps_per_s"] > 0 and train[0]["update_peak_bytes"] > 0
    assert [(r["env"], r["variant"]) for r in train] == [("smax", "3s5z")] * 3 + [("mujoco", "halfcheetah_6x1")] * 2
    assert [(r["seeds"], r["status"]) for r in by_step["e_seeds"]] == [(1, "built"), (8, "built"), (32, "built")]
    learning = next(r for r in by_step["f_learn"] if r.get("kind") == "learning")
    assert learning["updates"] >= 1 and learning["eval_win_rate"] is not None


def test_a_failing_or_overlong_command_never_stops_the_later_ones(tmp_path, monkeypatch, capsys):
    def commands(*argvs):
        return lambda suite: [gpu_suite.Command(f"c{i}", [sys.executable, "-c", a], cap_s=6) for i, a in enumerate(argvs)]

    steps = [
        gpu_suite.Step("a_fails", "one.log", commands("import sys; sys.exit(3)", 'print(\'{"x": 1}\')'),
                       lambda rows: f"rows {len(rows)}"),
        gpu_suite.Step("b_sleeps", "one.log", commands("import time; time.sleep(60)"), lambda rows: "slept"),
        gpu_suite.Step("c_runs", "two.log", commands('print(\'{"y": 2}\')'), lambda rows: f"y={rows[0]['y']}"),
    ]
    monkeypatch.setattr(gpu_suite, "STEPS", steps)
    monkeypatch.setattr(gpu_suite, "SMOKE_CAP_S", 6.0)
    assert gpu_suite.run_suite(str(tmp_path / "out"), str(tmp_path / "work"), smoke=True, budget_s=120) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[:2] for line in lines] == [["a_fails", "c0:failed"], ["b_sleeps", "c0:timeout"],
                                                   ["c_runs", "ok"]]
    assert "rows 1" in lines[0] and "slept" in lines[1] and "y=2" in lines[2]
    commands_run = [(r["step"], r["status"]) for r in _rows(tmp_path / "out") if r.get("kind") == "command"]
    assert commands_run == [("a_fails", "failed"), ("a_fails", "ok"), ("b_sleeps", "timeout"), ("c_runs", "ok")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.log", "results.jsonl", "summary.txt", "two.log"]


def test_the_gpu_plan_asks_for_valid_configs_within_nine_minutes(tmp_path):
    """What the GPU run itself will do (no smoke): every training config loads, the shapes are the issue's."""
    from jax_mat import config as config_lib

    suite = gpu_suite.Suite(out=str(tmp_path), work=str(tmp_path), smoke=False, deadline=0.0)
    plan = {step.key: step.commands(suite) for step in gpu_suite.STEPS}
    shapes = []
    for command in plan["d_train"] + plan["e_seeds"]:
        overrides = [a for a in command.argv[2:] if "=" in a and not a.startswith("-")]
        cfg = config_lib.load_config(None, overrides)
        shapes.append((cfg.env.name, cfg.env.variant, cfg.train.n_envs, cfg.train.episode_length))
    assert shapes == [("smax", "3s5z", n, 100) for n in (32, 1024, 4096)] + [
        ("mujoco", "halfcheetah_6x1", n, 100) for n in (40, 4096)] + [("smax", "3s5z", 32, 100)]
    assert plan["e_seeds"][0].argv[plan["e_seeds"][0].argv.index("--seeds") + 1:][:3] == ["1", "8", "32"]
    assert plan["b_pallas"][1].env == {"JAX_MAT_PALLAS_INTERPRET": "0"}
    assert gpu_suite.BUDGET_S + 20 + 20 <= 9 * 60  # the wheel install and one stopped command's grace on top
