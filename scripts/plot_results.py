#!/usr/bin/env python
"""Learning curves and a score table from finished (or running) jax_mat runs.

    python scripts/plot_results.py RUN_DIR [RUN_DIR ...] [--tag episode/win_rate] [--out curves.png]
                                   [--table scores.md] [--group-by algo|run] [--smooth 10]

Reads each run's TensorBoard event files (``tb/`` or ``tb/seed_<k>/``) and
draws one line per algorithm (runs of the same algorithm, and the seeds of a
sweep, are pooled: mean with a one-std band over seeds; ``--group-by run``
gives each run its own line). Steps on the x axis are environment steps.
``--table`` also writes the final greedy evaluations (``eval.json``) and, where
recorded, the absolute metric as Markdown tables (per group: the mean over
seeds with its 95% bootstrap interval, and the IQM; ``jax_mat.statistics``);
they are printed either way when every run has finished.
"""

from __future__ import annotations

import argparse
import os
import sys

from jax_mat import config as config_lib
from jax_mat import plotting
from jax_mat.training.run_dir import require_run


def group_runs(run_dirs: list[str], group_by: str) -> dict[str, list[str]]:
    """``{label: [run_dir, ...]}``: by algorithm (``marwkv_v6`` for RWKV versions other than 4) or by run."""
    groups: dict[str, list[str]] = {}
    for run_dir in run_dirs:
        run = require_run(run_dir)
        if group_by == "run":
            label = os.path.basename(os.path.normpath(run_dir))
        else:
            label = config_lib.config_from_file(run.config).run_algo_name
        groups.setdefault(label, []).append(run_dir)
    return groups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--tag", default="episode/win_rate", help="scalar to plot (default episode/win_rate)")
    parser.add_argument("--out", default="curves.png", help="PNG to write (default curves.png)")
    parser.add_argument("--table", help="also write the final scores as Markdown to this file")
    parser.add_argument("--group-by", choices=("algo", "run"), default="algo")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window in logged points")
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    try:
        groups = group_runs(args.run_dirs, args.group_by)
        plotting.plot_learning_curves(groups, args.tag, args.out, window=args.smooth, title=args.title)
        print(f"wrote {args.out}")
        try:
            table = plotting.score_report(groups)
        except ValueError as err:
            if args.table:
                raise
            print(f"(no score table: {err})")
            return 0
        print(table, end="")
        if args.table:
            with open(args.table, "w") as f:
                f.write(table)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
