#!/usr/bin/env python
"""Gather finished runs' marl-eval records into one JSON file for marl-eval (or rliable).

    python scripts/export_marl_eval.py RUN_DIR [RUN_DIR ...] --out FILE

Each run writes ``marl_eval.json`` when it finishes (``jax_mat.training.evaluation``): environment -> task
-> algorithm -> ``run_<k>`` -> ``step_<i>`` (``step_count``, per-episode ``return`` and ``win_rate``) and
``absolute_metrics``. Runs of the same environment, task and algorithm are numbered on (``run_0`` ...).
A run that has not finished, or a file that cannot be written, is one ``error:`` line, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from jax_mat.training.evaluation import merge_marl_eval
from jax_mat.training.run_dir import MARL_EVAL_FILE, RunDir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    records = []
    try:
        for run_dir in args.run_dirs:
            path = RunDir(run_dir).marl_eval
            if not os.path.isfile(path):
                raise ValueError(f"{run_dir} has no {MARL_EVAL_FILE} (not a finished jax_mat run)")
            with open(path) as f:
                records.append(json.load(f))
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ValueError(f"cannot write {args.out}: {folder} is not a writable folder")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(args.out, "w") as f:
        json.dump(merge_marl_eval(records), f)
    print(f"wrote {args.out} ({len(records)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
