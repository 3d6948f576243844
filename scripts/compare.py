#!/usr/bin/env python
"""Train several algorithms on one task (seeds vmapped) and compare them in one figure.

    python scripts/compare.py [CONFIG] --algos mat mappo happo mat_dec [--seeds 3] [--out DIR]
                              [--tag episode/win_rate] [--smooth 10] [key=value ...]

Each algorithm trains as ``python -m jax_mat.train CONFIG algo=<name> key=value ... --seeds N
--run-dir DIR/<name>`` (the algorithm's own config file, then your overrides); each seed logs to its
own TensorBoard run and the sweep's mean/std/IQM to another. Then ``DIR/compare.png`` shows the
learning curves (mean and one-std band over seeds, one line per algorithm) and ``DIR/scores.md`` the
final greedy evaluations and the absolute metric (mean over seeds with its 95% bootstrap interval, IQM). An algorithm whose run directory already holds a finished run is not
trained again; an unfinished one is resumed. Use ``--tag episode/return`` for MuJoCo.
"""

from __future__ import annotations

import argparse
import os
import sys

from jax_mat import config as config_lib
from jax_mat import plotting
from jax_mat import train
from jax_mat.training.run_dir import RunDir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="[CONFIG] key=value")
    parser.add_argument("--algos", nargs="+", required=True, help="algorithms, e.g. mat mappo happo mat_dec")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--tag", default="episode/win_rate")
    parser.add_argument("--smooth", type=int, default=10)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after the options
    name, overrides = config_lib.split_cli_args(args.items)
    progress = ["--no-progress"] if args.no_progress else []
    try:
        for algo in args.algos:  # every config error before any training
            config_lib.load_config(name, [f"algo={algo}", *overrides, f"train.seeds={args.seeds}"])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    groups = {}
    for algo in args.algos:
        run_dir = os.path.join(args.out, algo)
        groups[algo] = [run_dir]
        if RunDir(run_dir).is_finished():
            print(f"{algo}: finished run in {run_dir}, not trained again")
            continue
        if RunDir(run_dir).is_run():
            code = train.main(["--resume", run_dir, *progress])
        else:
            items = ([name] if name else []) + [f"algo={algo}", *overrides]
            code = train.main([*items, "--seeds", str(args.seeds), "--run-dir", run_dir, *progress])
        if code:
            return code
    figure = os.path.join(args.out, "compare.png")
    title = f"{os.path.basename(os.path.normpath(args.out))}: {args.tag}"
    try:
        plotting.plot_learning_curves(groups, args.tag, figure, window=args.smooth, title=title)
        table = plotting.score_report(groups)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(os.path.join(args.out, "scores.md"), "w") as f:
        f.write(table)
    print(f"\nwrote {figure} and {os.path.join(args.out, 'scores.md')}\n{table}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
