#!/usr/bin/env python
"""The GPU suite: every check and benchmark a visit to a GPU machine should bring back, in one time-boxed run.

    python scripts/gpu_suite.py [--smoke] [--budget-s 480] [--work DIR] OUT_DIR

(``bash scripts/gpu_suite.sh [--smoke] OUT_DIR`` installs the carried wheels first, then runs this.)
Steps, in order; each command has a time box, and a step that fails or runs out of time never stops the later
ones:

  a  env     the machine (GPU, memory, driver, jax / jaxlib / CUDA plugin versions, backend) and the import of every
             module of jax_mat and pallas_kernels
  b  pallas  the Pallas WKV kernels natively on the GPU: ``impl="auto"``'s kernel check, then
             ``tests/test_pallas_wkv.py`` (forward and every gradient vs the float64 and ``lax.scan`` references
             and upstream's fixtures) with ``JAX_MAT_PALLAS_INTERPRET=0``
  c  wkv     ``scripts/bench_wkv.py``: scan vs chunked vs Pallas, forward + backward, v4 and v6, at (B, T, C) =
             (4096, 8, 64), (1024, 32, 64), (256, 256, 64), (64, 1024, 64), with the card's copy bandwidth
  d  train   ``scripts/bench_train.py``: MAT on SMAX 3s5z at 32 (the paper's shape), 1024 and 4096 environments,
             MAT on MJX HalfCheetah 6x1 at 40 and 4096: env-steps/s, compile time, peak memory
  e  seeds   ``scripts/bench_seeds.py``: 1, 8 and 32 vmapped seeds of the paper-shaped 3s5z run
  f  learn   a short learning run: ``python -m jax_mat.train`` (MAT, SMAX 3m, the default config), cut at its time
             box; its logged returns and win rates
  g  repro   with the time left, ``scripts/reproduce_smax.py --maps 3s5z --algos mat --seeds N`` (skipped when the
             script is not there; N from ``JAX_MAT_GPU_SEEDS``, default 8)

``--smoke`` runs the same steps at tiny sizes with Pallas in interpret mode, so the suite can be rehearsed on a
CPU (``tests/test_gpu_suite.py`` does, in the default test suite): the larger training shapes are built but not
compiled (``bench_train.py --build-only``), and step g only checks that the script answers ``--help``.

OUT_DIR receives at most 6 files, each far below 16 MiB: ``results.jsonl`` (one JSON object per result row, each
with its ``step`` and ``command``, and one ``"kind": "command"`` row per command with its status and seconds),
``summary.txt`` (one line per step, also printed as each step ends) and one log per group of steps (``env.log``,
``pallas.log``, ``bench.log``, ``learn.log``). Run directories and caches go to ``--work`` (a temporary folder by
default), never to OUT_DIR. The exit status is 0 when every step ran (a step's own failures are in its summary).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELF = os.path.abspath(__file__)
BUDGET_S = 480.0  # the run; with the wheel install (~20 s) and a stopped command's grace (<= 20 s): under 9 minutes
SMOKE_BUDGET_S = 900.0
WKV_SHAPES = ["4096x8x64", "1024x32x64", "256x256x64", "64x1024x64"]
VERSIONS = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "flax", "optax", "chex", "orbax-checkpoint",
            "numpy", "triton", "jaxmarl", "brax", "mujoco", "mujoco-mjx", "tensorboardX")
# Every size a smoke run shrinks: 2 environments, 4 steps, 1 epoch, a narrow 1-block network.
TINY = ["train.n_envs=2", "train.episode_length=4", "algo.ppo_epochs=1", "algo.num_mini_batch=1", "algo.n_embd=16",
        "algo.n_block=1", "algo.n_head=1"]


@dataclasses.dataclass(frozen=True)
class Command:
    label: str
    argv: list[str]
    cap_s: float  # its time box on the GPU; a smoke run allows up to SMOKE_CAP_S
    env: dict = dataclasses.field(default_factory=dict)
    reserve_s: float = 0.0  # kept back for it while the earlier commands of its step run


@dataclasses.dataclass(frozen=True)
class Step:
    key: str
    log: str
    commands: Callable[["Suite"], list[Command]]
    summarise: Callable[[list[dict]], str]
    reserve_s: float = 10.0  # kept back for this step while the earlier ones run, so they cannot starve it


SMOKE_CAP_S = 300.0


# ----------------------------------------------------------------------------------------------------------------
# the steps
# ----------------------------------------------------------------------------------------------------------------


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def env_commands(suite: "Suite") -> list[Command]:
    return [Command("report", _py(SELF, "--internal", "env"), 40)]


def pallas_commands(suite: "Suite") -> list[Command]:
    interpret = "1" if suite.smoke else "0"
    pytest = _py("-m", "pytest", "tests/test_pallas_wkv.py", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                 "-rfE", "--timeout", "240")
    if suite.smoke:
        pytest += ["-k", "upstream_fixture or native_mode"]
    return [
        Command("kernel_check", _py(SELF, "--internal", "kernels", interpret), 40),
        Command("pytest", pytest, 75, {"JAX_MAT_PALLAS_INTERPRET": interpret}),
    ]


def wkv_commands(suite: "Suite") -> list[Command]:
    sizes = ["--shapes", "4x8x64", "--repeats", "1", "--copy-mib", "8"] if suite.smoke else [
        "--shapes", *WKV_SHAPES, "--repeats", "3"]
    return [Command("bench_wkv", _py("scripts/bench_wkv.py", "--impl", "scan,chunked,pallas", *sizes), 75)]


def train_commands(suite: "Suite") -> list[Command]:
    cases = [  # (label, overrides, GPU time box): the paper's shapes first, then the large ones
        ("smax_3s5z_32", ["env.map=3s5z", "train.n_envs=32"], 45),
        ("smax_3s5z_1024", ["env.map=3s5z", "train.n_envs=1024"], 45),
        ("smax_3s5z_4096", ["env.map=3s5z", "train.n_envs=4096"], 55),
        ("mjx_halfcheetah_40", ["env=mujoco", "env.task=halfcheetah_6x1", "train.n_envs=40"], 50),
        ("mjx_halfcheetah_4096", ["env=mujoco", "env.task=halfcheetah_6x1", "train.n_envs=4096"], 60),
    ]
    commands = []
    for i, (label, overrides, cap) in enumerate(cases):
        if suite.smoke:  # the first case compiles and runs at a tiny size; the others are built only
            overrides = [o for o in overrides if not o.startswith("train.n_envs")] + TINY
            extra = ["--updates", "1"] if i == 0 else ["--build-only"]
        else:
            extra = ["--updates", "2"]
        commands.append(Command(label, _py("scripts/bench_train.py", *overrides, "--json", *extra), cap))
    return commands


def seeds_commands(suite: "Suite") -> list[Command]:
    if suite.smoke:  # the vmapped sweep compiles for minutes on a CPU (tests/test_training.py runs one)
        return [Command("bench_seeds", _py("scripts/bench_seeds.py", "env.map=3s5z", *TINY, "--seeds", "1", "8", "32",
                                           "--json", "--build-only"), 80)]
    return [Command("bench_seeds", _py("scripts/bench_seeds.py", "env.map=3s5z", "--seeds", "1", "8", "32",
                                       "--updates", "2", "--json"), 80)]


def learn_commands(suite: "Suite") -> list[Command]:
    run_dir = os.path.join(suite.work, "learn_smax_3m")
    overrides = [*TINY, "train.total_steps=8", "train.eval_episodes=1", "train.eval_every=0"] if suite.smoke else []
    return [
        Command("train", _py("-m", "jax_mat.train", *overrides, "--run-dir", run_dir, "--no-progress"), 100),
        Command("curve", _py(SELF, "--internal", "learning", run_dir), 15, reserve_s=10),
    ]


def repro_commands(suite: "Suite") -> list[Command]:
    script = os.path.join(REPO, "scripts", "reproduce_smax.py")
    if not os.path.exists(script):
        return []
    if suite.smoke:
        return [Command("reproduce_help", _py(script, "--help"), 30)]
    out = os.path.join(suite.work, "repro_3s5z")
    seeds = os.environ.get("JAX_MAT_GPU_SEEDS", "8")
    return [
        Command("reproduce", _py(script, "--maps", "3s5z", "--algos", "mat", "--seeds", seeds, "--out", out,
                                 "--no-progress"), 600),
        Command("table", _py(SELF, "--internal", "show", os.path.join(out, "results.md")), 10, reserve_s=10),
    ]


# ----------------------------------------------------------------------------------------------------------------
# one-line summaries from a step's result rows
# ----------------------------------------------------------------------------------------------------------------


def _fmt(x, spec=",.0f", missing="-"):
    return format(x, spec) if isinstance(x, (int, float)) and math.isfinite(x) else missing


def summarise_env(rows):
    env = next((r for r in rows if r.get("kind") == "env"), None)
    imports = next((r for r in rows if r.get("kind") == "imports"), None)
    if env is None:
        return "no environment report"
    v = env["versions"]
    memory = f"{env['memory_bytes'] / 2**30:.1f} GiB" if env.get("memory_bytes") else "memory ?"
    text = (f"{env['device_kind']} x{env['device_count']} ({env['backend']}), {memory}, driver {env.get('driver') or '?'};"
            f" jax {v.get('jax')} jaxlib {v.get('jaxlib')} cuda13-plugin {v.get('jax-cuda13-plugin')}")
    if imports:
        failed = imports["failed"]
        text += f"; imports {imports['modules'] - len(failed)}/{imports['modules']} ok"
        text += f" (failed: {', '.join(failed)})" if failed else ""
    return text


def summarise_pallas(rows):
    parts = [f"{r['kernel']}: {'works' if r['works'] else 'FAILS (' + r['failure'] + ')'} ({r['mode']})"
             for r in rows if r.get("kind") == "kernel_check"]
    tests = next((r for r in rows if r.get("kind") == "pytest"), None)
    if tests:
        parts.append(f"tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped "
                     f"({tests['mode']})")
    return "; ".join(parts) or "no result"


def summarise_wkv(rows):
    timed = [r for r in rows if "fwd_bwd_ms" in r]
    if not timed:
        return "no timing"
    parts = [f"copy {timed[0]['copy_gb_per_s']:.0f} GB/s"]
    for version in ("v4", "v6"):
        by_shape = {}
        for r in timed:
            if r["version"] == version:
                by_shape.setdefault((r["batch"], r["T"]), {})[r["impl"]] = r
        ratios = [s["scan"]["fwd_bwd_ms"] / s["pallas"]["fwd_bwd_ms"] for s in by_shape.values() if {"scan", "pallas"} <= set(s)]
        best = max((r["fraction_of_copy"] for r in timed if r["version"] == version), default=0.0)
        text = f"{version}: pallas/scan speed {min(ratios):.2f}x-{max(ratios):.2f}x" if ratios else f"{version}: no pallas timing"
        parts.append(f"{text}, best {100 * best:.0f}% of copy")
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        parts.append(f"{len(failed)} kernel builds failed")
    return "; ".join(parts)


def summarise_train(rows):
    parts = []
    for r in rows:
        if r.get("kind") == "command" or "status" not in r:
            continue
        label = f"{r['env']}:{r['variant']} x{r['n_envs']}"
        if r["status"] == "built":
            parts.append(f"{label} built")
        else:
            peak = r.get("device_peak_bytes") or r.get("update_peak_bytes")
            parts.append(f"{label} {_fmt(r['train_env_steps_per_s'])} steps/s (compile {r['compile_s']:.0f} s, "
                         f"peak {_fmt(peak / 2**20 if peak else None)} MiB)")
    return "; ".join(parts) or "no result"


def summarise_seeds(rows):
    rows = [r for r in rows if "seeds" in r]
    if not rows:
        return "no result"
    if all(r.get("status") == "built" for r in rows):
        return ", ".join(f"{r['seeds']} seeds built" for r in rows)
    text = ", ".join(f"{r['seeds']} seeds {_fmt(r['env_steps_per_s'])} steps/s" for r in rows)
    ratios = [f"{r['seeds']} seeds take {r['time_vs_one_seed']:.2f}x one seed's time" for r in rows
              if r.get("time_vs_one_seed") and r["seeds"] > 1]
    return "; ".join([text, *ratios])


def summarise_learn(rows):
    curve = next((r for r in rows if r.get("kind") == "learning"), None)
    if curve is None:
        return "no metrics"
    text = (f"{curve['updates']} updates, {_fmt(curve['env_steps'])} env steps, return {_fmt(curve['first_return'], '.2f')}"
            f" -> {_fmt(curve['last_return'], '.2f')}, win rate {_fmt(curve['first_win_rate'], '.2f')} -> "
            f"{_fmt(curve['last_win_rate'], '.2f')}, {_fmt(curve['env_steps_per_s'])} steps/s")
    if curve.get("eval_win_rate") is not None:
        text += f", greedy eval win rate {curve['eval_win_rate']:.2f}"
    return text


def summarise_repro(rows):
    shown = next((r for r in rows if r.get("kind") == "file"), None)
    return f"results table {'written' if shown and shown['exists'] else 'not written'}" if shown else "see learn.log"


STEPS = [
    Step("a_env", "env.log", env_commands, summarise_env, 10),
    Step("b_pallas", "pallas.log", pallas_commands, summarise_pallas, 30),
    Step("c_wkv", "bench.log", wkv_commands, summarise_wkv, 30),
    Step("d_train", "bench.log", train_commands, summarise_train, 100),
    Step("e_seeds", "bench.log", seeds_commands, summarise_seeds, 50),
    Step("f_learn", "learn.log", learn_commands, summarise_learn, 70),
    Step("g_repro", "learn.log", repro_commands, summarise_repro, 0),
]


# ----------------------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Suite:
    out: str
    work: str
    smoke: bool
    deadline: float

    def env(self, extra: dict) -> dict:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
        # The repository's own jax_mat and pallas_kernels, before anything installed (none is, on the GPU machine).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
        if self.smoke:  # rehearsals recompile the same tiny programs: keep them between runs
            env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jax_mat_gpu_suite_cache"))
        return env

    def run(self, step: Step, command: Command, reserve_s: float) -> tuple[dict, list[dict]]:
        """Runs one command inside its time box; its status row and the JSON rows it printed."""
        cap = min(SMOKE_CAP_S if self.smoke else command.cap_s, self.deadline - time.monotonic() - reserve_s)
        if step.key == "g_repro" and not self.smoke:  # the last step takes whatever time is left
            cap = self.deadline - time.monotonic() - reserve_s
        status = {"kind": "command", "step": step.key, "command": command.label, "argv": command.argv[1:]}
        if cap < 5:
            return dict(status, status="skipped", reason="out of time", seconds=0.0), []
        log_path = os.path.join(self.out, step.log)
        with open(log_path, "a") as log:
            log.write(f"\n===== {step.key} / {command.label}: {' '.join(command.argv)} (time box {cap:.0f} s)\n")
            log.flush()
            start = time.monotonic()
            with tempfile.TemporaryFile("w+") as captured:
                proc = subprocess.Popen(command.argv, cwd=REPO, env=self.env(command.env), stdout=captured,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
                try:
                    rc = proc.wait(timeout=cap)
                    state = "ok" if rc == 0 else "failed"
                except subprocess.TimeoutExpired:
                    _stop(proc)
                    rc, state = proc.returncode, "timeout"
                seconds = time.monotonic() - start
                captured.seek(0)
                text = captured.read()
            log.write(text)
            log.write(f"===== {step.key} / {command.label}: {state} (exit {rc}) after {seconds:.1f} s\n")
        rows = []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    rows.append({"step": step.key, "command": command.label, **row})
        if command.argv[1:3] == ["-m", "pytest"]:
            rows.append({"step": step.key, "command": command.label, "kind": "pytest",
                         "mode": "interpret" if command.env.get("JAX_MAT_PALLAS_INTERPRET") == "1" else "native",
                         **_pytest_counts(text)})
        return dict(status, status=state, returncode=rc, seconds=round(seconds, 1)), rows


def _stop(proc: subprocess.Popen) -> None:
    """Ends the command and every process it started (its own session), politely first."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _pytest_counts(text: str) -> dict:
    counts = {}
    for what in ("passed", "failed", "skipped", "error", "deselected"):
        found = re.findall(rf"(\d+) {what}", text.splitlines()[-1] if text.strip() else "")
        counts["errors" if what == "error" else what] = int(found[-1]) if found else 0
    return counts


def run_suite(out: str, work: str, smoke: bool, budget_s: float) -> int:
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    suite = Suite(out=out, work=work, smoke=smoke, deadline=time.monotonic() + budget_s)
    results = open(os.path.join(out, "results.jsonl"), "a")
    summary = open(os.path.join(out, "summary.txt"), "a")
    header = (f"jax_mat GPU suite{' (smoke)' if smoke else ''}, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
              f"budget {budget_s:.0f} s, work dir {work}")
    print(header, flush=True)
    summary.write(header + "\n")
    for i, step in enumerate(STEPS):
        reserve = sum(later.reserve_s for later in STEPS[i + 1:])
        commands = step.commands(suite)
        rows, statuses = [], []
        for j, command in enumerate(commands):
            status, got = suite.run(step, command, reserve + sum(c.reserve_s for c in commands[j + 1:]))
            statuses.append(status)
            rows.extend(got)
            for row in [*got, status]:
                results.write(json.dumps(row) + "\n")
            results.flush()
        if not commands:
            state = "skipped"
            text = "scripts/reproduce_smax.py is not there" if step.key == "g_repro" else "nothing to run"
        else:
            bad = [s for s in statuses if s["status"] != "ok"]
            state = "ok" if not bad else ",".join(f"{s['command']}:{s['status']}" for s in bad)
            try:
                text = step.summarise(rows)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
                text = f"no summary ({type(err).__name__}: {err})"
        seconds = sum(s.get("seconds", 0.0) for s in statuses)
        line = f"{step.key:9s} {state:10s} {seconds:6.1f} s  {text}"
        print(line, flush=True)
        summary.write(line + "\n")
        summary.flush()
    results.close()
    summary.close()
    return 0


# ----------------------------------------------------------------------------------------------------------------
# the in-process parts of steps a, b and f (run as subprocesses of the driver: python gpu_suite.py --internal ...)
# ----------------------------------------------------------------------------------------------------------------


def internal_env() -> None:
    import importlib
    import importlib.metadata
    import pkgutil
    import platform

    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    print(json.dumps(dict(kind="env", python=platform.python_version(), machine=platform.machine(),
                          cpus=os.cpu_count(), backend=jax.default_backend(), device_kind=device.device_kind,
                          device_count=jax.device_count(), memory_bytes=stats.get("bytes_limit"),
                          driver=driver, versions=versions)), flush=True)
    import jax_mat
    import pallas_kernels

    failed, modules = [], 0
    for package in (jax_mat, pallas_kernels):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            modules += 1
            try:
                importlib.import_module(info.name)
            except Exception as err:  # noqa: BLE001 - every import failure is reported, none stops the others
                failed.append(info.name)
                print(json.dumps(dict(kind="import_error", module=info.name, error=f"{type(err).__name__}: {err}")))
    print(json.dumps(dict(kind="imports", modules=modules, failed=failed)), flush=True)


def internal_kernels(interpret: str) -> None:
    import jax

    from jax_mat.ops import wkv

    for module in ("wkv4", "wkv6"):
        failure = wkv.kernel_failure(module, interpret=interpret == "1")
        print(json.dumps(dict(kind="kernel_check", kernel=f"pallas_kernels.{module}", works=failure is None,
                              failure=failure, mode="interpret" if interpret == "1" else "native",
                              backend=jax.default_backend())), flush=True)
    if jax.default_backend() == "gpu":  # what impl="auto" picks here (and its one log line, in the log)
        for op, module in (("wkv4", "wkv4"), ("wkv5", "wkv6"), ("wkv6", "wkv6")):
            print(json.dumps(dict(kind="auto_choice", op=op, impl=wkv._resolve_impl(op, "auto", False, module))))


def internal_learning(run_dir: str) -> None:
    from jax_mat.training.run_dir import RunDir

    run = RunDir(run_dir)
    path = run.metrics
    records = []
    if os.path.exists(path):
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if "perf/env_steps_per_s" in r]  # one per logged update
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    episodes = [r for r in train if "episode/return" in r]  # updates in which episodes ended
    first, last = (episodes[0], episodes[-1]) if episodes else ({}, {})
    eval_path = run.eval
    final_eval = None
    if os.path.exists(eval_path):
        with open(eval_path) as f:
            final_eval = json.load(f).get("win_rate")
    print(json.dumps(dict(kind="learning", updates=len(train), env_steps=train[-1]["env_steps"] if train else 0,
                          first_return=first.get("episode/return"), last_return=last.get("episode/return"),
                          first_win_rate=first.get("episode/win_rate"), last_win_rate=last.get("episode/win_rate"),
                          env_steps_per_s=train[-1]["perf/env_steps_per_s"] if train else None,
                          evaluations=len(evals), eval_win_rate=final_eval)))
    stride = max(1, len(episodes) // 50)  # the curve, at most ~50 points
    for r in episodes[::stride]:
        print(json.dumps(dict(kind="curve", **{k: r[k] for k in ("env_steps", "episode/return", "episode/win_rate",
                                                                  "perf/env_steps_per_s") if k in r})))


def internal_show(path: str) -> None:
    exists = os.path.exists(path)
    if exists:
        with open(path) as f:
            sys.stdout.write(f.read() + "\n")
    print(json.dumps(dict(kind="file", path=path, exists=exists)))


INTERNAL = {"env": internal_env, "kernels": internal_kernels, "learning": internal_learning, "show": internal_show}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", help="folder for results.jsonl, summary.txt and the logs")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, Pallas in interpret mode (CPU rehearsal)")
    parser.add_argument("--budget-s", type=float, help=f"the whole run (default {BUDGET_S:.0f}; smoke {SMOKE_BUDGET_S:.0f})")
    parser.add_argument("--work", help="run directories and caches (default: a new temporary folder)")
    parser.add_argument("--internal", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.internal:
        name, *rest = args.internal
        INTERNAL[name](*rest)
        return 0
    if not args.out:
        print("error: gpu_suite.py needs OUT_DIR, the folder for the results", file=sys.stderr)
        return 2
    budget = args.budget_s or (SMOKE_BUDGET_S if args.smoke else BUDGET_S)
    if budget <= 0:
        print(f"error: --budget-s must be > 0, got {budget:g}", file=sys.stderr)
        return 2
    work = args.work or tempfile.mkdtemp(prefix="jax_mat_gpu_suite_")
    return run_suite(os.path.abspath(args.out), os.path.abspath(work), args.smoke, budget)


if __name__ == "__main__":
    sys.exit(main())
