#!/usr/bin/env python
"""The MAT paper's StarCraft table on SMAX: maps x algorithms x seeds, then the table beside the paper's figures.

    python scripts/reproduce_smax.py [--maps 3s5z 5m_vs_6m ...] [--algos mat mappo] [--seeds 5]
                                     [--budget paper|STEPS] [--out runs/repro] [--resume]
                                     [--marl-eval FILE] [--no-progress] [key=value ...]

Each (map, algorithm) trains as ``python -m jax_mat.train algo=<algo> env.map=<map> key=value ...
--seeds N --run-dir OUT/<map>/<algo>`` (seeds vmapped in one program) with the map's per-map settings
(``jax_mat/configs/env/smax_<map>.yaml``: the paper's budget, epochs and clip) and the faithful SMAC
defaults (``env.time_limit=smac``, agent ids and last actions, value masks off). ``--budget STEPS`` trains
every map for STEPS environment steps instead (a multiple of one update). Finished runs (``eval.json``) are
not trained again; an unfinished one is continued with ``--resume`` (without it the script stops and says
so), so a long table can be built over several sittings.

At the end ``OUT/results.md`` holds the table: per (map, algorithm) the final greedy win rate and the
absolute metric (mean over seeds with the 95% bootstrap interval), the environment steps at which the
periodic evaluation first reached a win rate of 0.8, the wall time this script spent on it, and the
paper's figure (MAT paper, Table 1: median evaluation win rate). ``--marl-eval FILE`` (default
``OUT/marl_eval.json``) gathers every run's marl-eval record into one file. Every mistake (an unknown
map or algorithm, a budget that is not a multiple of one update, an export folder that cannot be
written) is one ``error:`` line before anything is trained or written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

from jax_mat import config as config_lib
from jax_mat import plotting, statistics
from jax_mat import train
from jax_mat.training import evaluation
from jax_mat.training.run_dir import RunDir

# The MAT paper's Table 1 (SMAC): map -> (environment steps, MAT's win rate, MAPPO's win rate), in percent.
PAPER = {
    "3s5z": (3_000_000, 100.0, 72.5),
    "5m_vs_6m": (5_000_000, 90.6, 88.2),
    "3s_vs_5z": (5_000_000, 100.0, 100.0),
    "25m": (2_000_000, 100.0, 100.0),
    "10m_vs_11m": (5_000_000, 100.0, 96.3),
    "6h_vs_8z": (10_000_000, 98.8, 88.4),
    "27m_vs_30m": (10_000_000, 100.0, 93.1),
    "3s5z_vs_3s6z": (20_000_000, 96.5, 84.3),
}
PAPER_ALGOS = ("mat", "mappo")
WIN_THRESHOLD = 0.8
TIMING_FILE = "reproduce.json"  # per run directory: the wall time this script spent training it


def run_dir_of(out: str, map_name: str, algo: str) -> str:
    return os.path.join(out, map_name, algo)


def run_config(map_name: str, algo: str, seeds: int, budget: int | None, overrides: list[str]) -> config_lib.Config:
    """The config of one (map, algorithm) run; ``ValueError`` on anything wrong with it."""
    cfg = config_lib.load_config(None, [f"algo={algo}", f"env.map={map_name}", *overrides, f"train.seeds={seeds}"])
    if budget is not None:
        if budget % cfg.batch_size:
            raise ValueError(
                f"--budget {budget} is not a multiple of one update on {map_name} (train.n_envs * "
                f"train.episode_length = {cfg.batch_size}); e.g. {budget - budget % cfg.batch_size or cfg.batch_size}"
            )
        cfg = config_lib.load_config(None, [f"algo={algo}", f"env.map={map_name}", *overrides,
                                            f"train.seeds={seeds}", f"train.total_steps={budget}"])
    return cfg


def check_writable_file(path: str) -> None:
    """``ValueError`` unless ``path`` can be written: its nearest existing folder takes a file (tried for real:
    permission bits say nothing to root, nor about /proc) and ``path`` is not a folder. Writes nothing."""
    if os.path.isdir(path):
        raise ValueError(f"cannot write {path}: it is a folder")
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"cannot write {path}: {existing} does not take files ({err.strerror})") from None


def parse_budget(text: str) -> int | None:
    if text == "paper":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value.is_integer() and value >= 1):
        raise ValueError(f"--budget must be 'paper' or a number of environment steps >= 1, got {text!r}")
    return int(value)


def first_reach(run_dir: str, threshold: float = WIN_THRESHOLD) -> float:
    """Mean over seeds of the environment steps at which a seed's periodic evaluation first reached
    ``threshold`` (NaN if a seed never did, or nothing was evaluated)."""
    records = evaluation.read_evaluations(run_dir)
    seeds = sorted({r["seed"] for r in records})
    firsts = []
    for seed in seeds:
        reached = [r["env_steps"] for r in records if r["seed"] == seed and r["win_rate"] >= threshold]
        firsts.append(min(reached) if reached else math.nan)
    return float(sum(firsts) / len(firsts)) if firsts else math.nan


def _timing(run_dir: str) -> dict:
    path = os.path.join(run_dir, TIMING_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _write_timing(run_dir: str, timing: dict) -> None:
    path = os.path.join(run_dir, TIMING_FILE)
    with open(f"{path}.tmp", "w") as f:
        json.dump(timing, f)
    os.replace(f"{path}.tmp", path)


def wall_seconds(run_dir: str) -> float:
    """The wall time this script spent training the run, over every part of it (NaN if not recorded)."""
    return float(_timing(run_dir).get("wall_s", math.nan))


def start_part(run_dir: str, now: float) -> None:
    """Before continuing an existing run: count the part before it if that part was killed, from when it
    started (this script's note, or the run's ``config.yaml`` for a first part) to its last ``metrics.jsonl``
    line; then note that a part starts at ``now`` (``time.time()``)."""
    run = RunDir(run_dir)
    timing = _timing(run_dir)
    started = timing.get("part_started")
    if started is None and not timing and os.path.isfile(run.config):
        started = os.path.getmtime(run.config)  # a first part that never reached its end
    if started is not None and os.path.isfile(run.metrics):
        timing["wall_s"] = timing.get("wall_s", 0.0) + max(0.0, os.path.getmtime(run.metrics) - started)
    timing["part_started"] = now
    _write_timing(run_dir, timing)


def end_part(run_dir: str, seconds: float) -> None:
    """After a part of ``seconds`` ended (finished, or stopped with an error)."""
    timing = _timing(run_dir)
    timing.pop("part_started", None)
    timing["wall_s"] = timing.get("wall_s", 0.0) + seconds
    _write_timing(run_dir, timing)


def results_table(out: str, maps: list[str], algos: list[str], configs: dict) -> str:
    """The Markdown table of every finished (map, algorithm) run under ``out``."""
    lines = [
        "| map | algorithm | env steps | time limit | eval | seeds | final win rate %, mean [95% CI] | "
        "absolute win rate %, mean [95% CI] | steps to eval win rate 0.8 | wall time | paper % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for map_name in maps:
        for algo in algos:
            run_dir = run_dir_of(out, map_name, algo)
            run = RunDir(run_dir)
            # A run's own settings (a resumed run keeps the budget it started with).
            cfg = config_lib.config_from_file(run.config) if run.is_run() else configs[map_name, algo]
            paper = PAPER.get(map_name)
            paper_cell = f"{paper[1 + PAPER_ALGOS.index(algo)]:.1f}" if paper and algo in PAPER_ALGOS else "—"
            try:
                final = plotting.eval_results(run_dir)
            except ValueError:
                lines.append(f"| {map_name} | {algo} | {cfg.train.total_steps:,} | {cfg.env.time_limit} | "
                             f"| | not finished | | | | {paper_cell} |")
                continue
            percent = lambda rows: plotting.format_estimate(statistics.summary([100 * r["win_rate"] for r in rows]), 1)
            final_cell = percent(final)
            try:
                absolute = plotting.eval_results(run_dir, absolute=True)
                absolute_cell = percent(absolute)
            except ValueError:
                absolute_cell = "—"
            reach = first_reach(run_dir)
            reach_cell = f"{reach:,.0f}" if math.isfinite(reach) else "not reached"
            wall = wall_seconds(run_dir)
            wall_cell = f"{wall / 60:.0f} min" if math.isfinite(wall) else "—"
            mode = "greedy" if cfg.train.eval_greedy else "stochastic"
            lines.append(
                f"| {map_name} | {algo} | {cfg.train.total_steps:,} | {cfg.env.time_limit} | {mode} | {len(final)} | "
                f"{final_cell} | {absolute_cell} | {reach_cell} | {wall_cell} | {paper_cell} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every run")
    parser.add_argument("--maps", nargs="+", default=list(PAPER), help="SMAX maps (default: the paper's eight)")
    parser.add_argument("--algos", nargs="+", default=list(PAPER_ALGOS), help="algorithms (default: mat mappo)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per run, vmapped (default 5)")
    parser.add_argument("--budget", default="paper", help="'paper' (each map's budget) or env steps for every map")
    parser.add_argument("--out", default="runs/repro")
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs")
    parser.add_argument("--marl-eval", help="the merged marl-eval JSON (default OUT/marl_eval.json)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_intermixed_args(argv)
    # key=value items right after --maps or --algos are overrides, not names.
    for names in (args.maps, args.algos):
        args.overrides += [n for n in names if "=" in n]
        names[:] = [n for n in names if "=" not in n]
    marl_eval_path = args.marl_eval or os.path.join(args.out, "marl_eval.json")
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        budget = parse_budget(args.budget)
        bad = [o for o in args.overrides if "=" not in o]
        if bad:
            raise ValueError(f"malformed override {bad[0]!r}; expected key=value, e.g. env.time_limit=jaxmarl")
        from jax_mat.envs.registry import known_smax_maps

        unknown = [m for m in args.maps if m not in known_smax_maps()]
        if unknown:
            raise ValueError(f"unknown SMAX map {unknown[0]!r} in --maps; known: {', '.join(known_smax_maps())}")
        configs = {(m, a): run_config(m, a, args.seeds, budget, args.overrides) for m in args.maps for a in args.algos}
        for (map_name, algo), cfg in configs.items():
            run_dir = run_dir_of(args.out, map_name, algo)
            started, finished = RunDir(run_dir).is_run(), RunDir(run_dir).is_finished()
            if started and not finished and not args.resume:
                raise ValueError(f"{run_dir} holds an unfinished run: pass --resume to continue it")
        check_writable_file(os.path.join(args.out, "results.md"))
        check_writable_file(marl_eval_path)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    progress = ["--no-progress"] if args.no_progress else []
    for (map_name, algo), cfg in configs.items():
        run_dir = run_dir_of(args.out, map_name, algo)
        if RunDir(run_dir).is_finished():
            print(f"{map_name} {algo}: finished run in {run_dir}")
            continue
        if RunDir(run_dir).is_run():
            start_part(run_dir, time.time())
            argv_run = ["--resume", run_dir, *progress]
        else:
            argv_run = [f"algo={algo}", f"env.map={map_name}", *args.overrides, f"train.seeds={args.seeds}",
                        f"train.total_steps={cfg.train.total_steps}", "--run-dir", run_dir, *progress]
        print(f"{map_name} {algo}: {cfg.train.total_steps:,} env steps x {args.seeds} seed(s) in {run_dir}")
        start = time.perf_counter()
        code = train.main(argv_run)
        if os.path.isdir(run_dir):
            end_part(run_dir, time.perf_counter() - start)
        if code:
            return code

    table = results_table(args.out, args.maps, args.algos, configs)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table)
    records = []
    for map_name, algo in configs:
        path = RunDir(run_dir_of(args.out, map_name, algo)).marl_eval
        if os.path.isfile(path):
            with open(path) as f:
                records.append(json.load(f))
    with open(marl_eval_path, "w") as f:
        json.dump(evaluation.merge_marl_eval(records), f)
    print(f"\n{table}\nwrote {os.path.join(args.out, 'results.md')} and {marl_eval_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
