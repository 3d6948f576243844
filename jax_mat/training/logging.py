"""Where metrics go: TensorBoard event files, ``metrics.jsonl`` and a progress bar (from process 0 only).

One seed: TensorBoard scalars in ``tb/`` and one JSON line per logged update.
A seed sweep of ``S`` seeds: each seed's scalars in ``tb/seed_<k>/`` (one
TensorBoard run per seed), their statistics over seeds in ``tb/aggregate/``
(``<name>/mean``, ``<name>/std``, ``<name>/iqm``), and one JSON line per seed
and logged update carrying ``"seed": k``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping, Sequence

from tensorboardX import SummaryWriter
from tqdm import tqdm

from jax_mat.training import sweep
from jax_mat.training.run_dir import RunDir


class RunLogger:
    """TensorBoard scalars, JSON lines and a tqdm bar over environment steps, for one seed or a sweep."""

    def __init__(self, run_dir: str, total_steps: int, initial_steps: int = 0, progress: bool = True,
                 n_seeds: int = 1, show_win_rate: bool = True):
        run = RunDir(run_dir)
        tb = run.tensorboard
        self.n_seeds = n_seeds
        # A resumed run logs again what came after its checkpoint: drop what the interrupted run logged there.
        purge = {"purge_step": initial_steps + 1} if initial_steps else {}
        if initial_steps:
            _drop_records_after(run.metrics, initial_steps)
        if n_seeds == 1:
            self.writers = [SummaryWriter(tb, **purge)]
            self.aggregate_writer = None
        else:
            self.writers = [SummaryWriter(os.path.join(tb, f"seed_{k}"), **purge) for k in range(n_seeds)]
            self.aggregate_writer = SummaryWriter(os.path.join(tb, "aggregate"), **purge)
        self.jsonl = open(run.metrics, "a")
        self.bar = tqdm(total=total_steps, initial=initial_steps, unit="step", unit_scale=True,
                        disable=not progress, dynamic_ncols=True)
        self.show_win_rate = show_win_rate  # False where episodes cannot be won (MuJoCo): the bar omits it
        self.last_win_rate = math.nan
        self.last_return = math.nan

    def log(self, env_steps: int, per_seed: Sequence[Mapping[str, float]], steps_per_s: float) -> None:
        """``per_seed``: one ``{name: value}`` per seed (a list of one for a single run)."""
        for seed, (writer, metrics) in enumerate(zip(self.writers, per_seed)):
            for name, value in metrics.items():
                if math.isfinite(value):
                    writer.add_scalar(name, value, env_steps)
            writer.add_scalar("perf/env_steps_per_s", steps_per_s, env_steps)
            record = {"env_steps": env_steps, "perf/env_steps_per_s": steps_per_s}
            if self.n_seeds > 1:
                record["seed"] = seed
            record.update({k: v for k, v in metrics.items() if math.isfinite(v)})
            self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        stats = self._write_aggregate("", per_seed, env_steps)
        win_rate = stats.get("episode/win_rate", {}).get("mean", math.nan)
        episode_return = stats.get("episode/return", {}).get("mean", math.nan)
        self.last_win_rate = win_rate if math.isfinite(win_rate) else self.last_win_rate
        self.last_return = episode_return if math.isfinite(episode_return) else self.last_return
        wins = {"win": f"{self.last_win_rate:.2f}"} if self.show_win_rate else {}
        self.bar.set_postfix(sps=f"{steps_per_s:,.0f}", **wins, ret=f"{self.last_return:.2f}", refresh=False)

    def advance(self, env_steps: int) -> None:
        self.bar.update(env_steps)

    def log_eval(self, env_steps: int, per_seed: Sequence[Mapping[str, float]]) -> None:
        """An evaluation's figures as ``eval/<name>`` scalars and one JSON line per seed."""
        for seed, (writer, results) in enumerate(zip(self.writers, per_seed)):
            record = {"env_steps": env_steps}
            if self.n_seeds > 1:
                record["seed"] = seed
            for name, value in results.items():
                if math.isfinite(value):
                    writer.add_scalar(f"eval/{name}", value, env_steps)
                    record[f"eval/{name}"] = value
            self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        self._write_aggregate("eval/", per_seed, env_steps)

    def _write_aggregate(self, prefix: str, per_seed: Sequence[Mapping[str, float]], env_steps: int):
        """Writes ``<prefix><name>/{mean,std,iqm}`` to ``tb/aggregate`` (sweeps only); returns the statistics."""
        stats = sweep.aggregate(per_seed)
        if self.aggregate_writer is not None:
            for name, values in stats.items():
                for stat, value in values.items():
                    if math.isfinite(value):
                        self.aggregate_writer.add_scalar(f"{prefix}{name}/{stat}", value, env_steps)
        return stats

    def close(self) -> None:
        self.bar.close()
        for writer in self.writers:
            writer.close()
        if self.aggregate_writer is not None:
            self.aggregate_writer.close()
        self.jsonl.close()


class NullLogger:
    """``RunLogger``'s interface writing nothing: the other processes of a multi-process run (process 0 logs)."""

    def log(self, env_steps: int, per_seed: Sequence[Mapping[str, float]], steps_per_s: float) -> None:
        pass

    def advance(self, env_steps: int) -> None:
        pass

    def log_eval(self, env_steps: int, per_seed: Sequence[Mapping[str, float]]) -> None:
        pass

    def close(self) -> None:
        pass


def write_json_atomic(path: str, payload: Mapping) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _drop_records_after(path: str, env_steps: int) -> None:
    """Rewrite ``metrics.jsonl`` (atomically) without the records logged after ``env_steps``."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("env_steps", 0) <= env_steps]
    if len(kept) == len(lines):
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)
