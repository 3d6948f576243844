"""Evaluation during training, the absolute metric and the marl-eval export (Gorsane et al., 2022).

* **Periodic evaluation.** Every ``train.eval_every`` updates, each seed's current parameters play
  ``train.eval_episodes`` episodes, greedy (``train.eval_greedy=true``, as MAT evaluates) or sampled
  (``false``, as Mava does). The figures go to TensorBoard and ``metrics.jsonl`` under ``eval/``, and each
  seed's record, with every episode's return and outcome, is one line of ``evaluations.jsonl``.
* **The best parameters** of each seed (highest win rate, or mean return where episodes cannot be won; a tie
  goes to the later evaluation) are kept in ``best/`` (orbax, atomic) with their scores in ``best.json``, so
  a resumed run keeps them. If that checkpoint is damaged on disk, a ``warning:`` line says so, it is moved
  aside (``best/<update>.damaged-<time>``) and the best parameters start afresh at the next evaluation
  (``best.json``'s scores belong to it alone, so an older best checkpoint cannot stand in).
* **The final evaluation** (``eval.json``): each seed's final parameters play ``train.eval_episodes``
  greedy episodes with the keys of ``final_evaluation_seed``; ``python -m jax_mat.evaluate RUN`` plays the
  same episodes by default.
* **The absolute metric.** At the end each seed's best parameters (its final ones if nothing was evaluated)
  play ten times ``train.eval_episodes`` episodes in the same mode.
* **marl-eval.** ``marl_eval_record`` turns a run's evaluations into marl-eval's raw-data layout, environment
  -> task -> algorithm -> ``run_<seed>`` -> ``step_<i>`` (``step_count`` and one list entry per episode of
  ``return`` and, where episodes can be won, ``win_rate``) plus ``absolute_metrics``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_mat.training import sweep
from jax_mat.training.run_dir import RunDir

ABSOLUTE_FACTOR = 10  # the absolute metric plays this many times train.eval_episodes
FINAL_SEED_OFFSET = 10_000  # the final evaluation of seed s plays with PRNGKey(s + FINAL_SEED_OFFSET)
_PERIODIC_STREAM, _ABSOLUTE_STREAM = 1, 2  # folded into each seed's key: evaluation keys never repeat a run's


def evaluation_keys(base_seed: int, n_seeds: int, stream: int, count: int) -> jax.Array:
    """Keys for the ``count``-th evaluation of a stream: seed ``k``'s derives from ``PRNGKey(base_seed + k)``
    alone, so seed ``k`` of a sweep evaluates exactly as the single run with that seed."""
    keys = sweep.seed_keys(base_seed, n_seeds)
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.fold_in(k, stream), count))(keys)
    return keys if n_seeds > 1 else keys[0]


def final_evaluation_seed(config: Any) -> int:
    """The base seed of a run's final evaluation: its keys are ``PRNGKey(final_evaluation_seed + k)`` for seed k."""
    return config.seed + FINAL_SEED_OFFSET


def final_evaluation(training: Any, params: Any, n_episodes: int | None = None, deterministic: bool = True,
                     base_seed: int | None = None) -> list[dict[str, float]]:
    """Each seed's ``params`` on ``n_episodes`` (default ``train.eval_episodes``) episodes, one dict per seed.

    ``training`` is a ``distributed.ShardedTraining``; ``base_seed`` defaults to ``final_evaluation_seed``. What
    ``eval.json`` reports at the end of a run, and what ``python -m jax_mat.evaluate`` reports by default.
    """
    cfg = training.trainer.config
    base_seed = final_evaluation_seed(cfg) if base_seed is None else base_seed
    keys = sweep.run_keys(base_seed, cfg.train.seeds)
    return sweep.split_seeds(training.evaluate(params, keys, n_episodes, deterministic), cfg.train.seeds)


def score(results: Mapping[str, float], has_wins: bool) -> float:
    """What makes one evaluation better than another: the win rate, or the mean return."""
    value = results["win_rate"] if has_wins else results["mean_return"]
    return value if math.isfinite(value) else -math.inf


class Evaluations:
    """Periodic evaluations and the best parameters of a run (one seed or a sweep).

    ``training`` is the run's ``distributed.ShardedTraining``; every process calls ``periodic`` and
    ``absolute`` (the parameters may be sharded), only ``primary`` writes files.
    """

    def __init__(self, training: Any, run_dir: str, has_wins: bool, primary: bool, start_update: int):
        from jax_mat.training.checkpoint import Checkpointer

        self.training = training
        self.cfg = training.trainer.config
        self.run = RunDir(run_dir)
        self.has_wins = has_wins
        self.primary = primary
        self.n_seeds = self.cfg.train.seeds
        self.greedy = self.cfg.train.eval_greedy
        self.best_scores = np.full(self.n_seeds, -np.inf)
        self.best_updates = np.full(self.n_seeds, -1, np.int64)
        self.best_params = None
        self._best = Checkpointer(self.run.best, max_to_keep=2)
        self._restore(start_update)

    def due(self, done_updates: int) -> bool:
        every = self.cfg.train.eval_every
        return bool(every) and done_updates % every == 0

    def periodic(self, params: Any, done_updates: int, logger: Any) -> list[dict[str, float]]:
        """Evaluates ``params`` after ``done_updates`` updates, logs and records it, keeps the best."""
        keys = evaluation_keys(self.cfg.seed, self.n_seeds, _PERIODIC_STREAM, done_updates)
        raw = self.training.evaluate(params, keys, self.cfg.train.eval_episodes, self.greedy)
        per_seed, episodes = sweep.split_seeds(raw, self.n_seeds), sweep.split_episodes(raw, self.n_seeds)
        env_steps = done_updates * self.cfg.batch_size
        logger.log_eval(env_steps, per_seed)
        if self.primary:
            with open(self.run.evaluations, "a") as f:
                for seed, (results, per_episode) in enumerate(zip(per_seed, episodes)):
                    f.write(json.dumps({"update": done_updates, "env_steps": env_steps, "seed": seed,
                                        "greedy": self.greedy, **results, **per_episode}) + "\n")
        scores = np.array([score(r, self.has_wins) for r in per_seed])
        better = scores >= self.best_scores
        if better.any():
            self._keep(params, better, scores, done_updates)
        return per_seed

    def absolute(self, final_params: Any) -> tuple[list[dict[str, float]], list[dict[str, list[float]]]]:
        """Each seed's best parameters (its ``final_params`` if never evaluated) on ``ABSOLUTE_FACTOR`` times
        the episodes: ``(per-seed results with the update they come from, per-seed episodes)``."""
        params = final_params if self.best_params is None else self._best_or_final(final_params)
        # ABSOLUTE_FACTOR rounds of train.eval_episodes: the periodic evaluation's program (and, for a host
        # bridge, its pool of simulators) serves again.
        episodes = [{} for _ in range(self.n_seeds)]
        for count in range(ABSOLUTE_FACTOR):
            keys = evaluation_keys(self.cfg.seed, self.n_seeds, _ABSOLUTE_STREAM, count)
            raw = self.training.evaluate(params, keys, self.cfg.train.eval_episodes, self.greedy)
            for seed, part in enumerate(sweep.split_episodes(raw, self.n_seeds)):
                for name, values in part.items():
                    episodes[seed].setdefault(name, []).extend(values)
        final_update = self.cfg.num_updates
        per_seed = []
        for seed, part in enumerate(episodes):
            returns, won = np.asarray(part["episode_return"]), np.asarray(part["episode_won"])
            per_seed.append({
                "episodes": float(returns.size), "win_rate": float(won.mean()), "mean_return": float(returns.mean()),
                "update": int(self.best_updates[seed]) if self.best_updates[seed] >= 0 else final_update,
            })
        return per_seed, episodes

    def close(self) -> None:
        self._best.close()

    # -- the best parameters ------------------------------------------------------------------ #

    def _keep(self, params: Any, better: np.ndarray, scores: np.ndarray, update: int) -> None:
        copy = jax.tree.map(jnp.copy, params)  # the update program donates the state it is given
        if self.best_params is None or self.n_seeds == 1:
            self.best_params = copy  # the first evaluation is every seed's best so far
        else:
            take = jnp.asarray(better)
            self.best_params = jax.tree.map(
                lambda new, old: jnp.where(take.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                copy, self.best_params)
        self.best_scores = np.where(better, scores, self.best_scores)
        self.best_updates = np.where(better, update, self.best_updates)
        self._best.save(update, {"params": self.best_params})
        if self.primary:
            from jax_mat.training.logging import write_json_atomic

            write_json_atomic(self.run.best_scores, {
                "checkpoint": update, "score": "win_rate" if self.has_wins else "mean_return",
                "scores": self.best_scores.tolist(), "updates": self.best_updates.tolist()})

    def _best_or_final(self, final_params: Any) -> Any:
        """The best parameters, each never-evaluated seed's replaced by its final ones."""
        if self.n_seeds == 1 or (self.best_updates >= 0).all():
            return self.best_params
        take = jnp.asarray(self.best_updates >= 0)
        return jax.tree.map(lambda b, f: jnp.where(take.reshape((-1,) + (1,) * (b.ndim - 1)), b, f),
                            self.best_params, final_params)

    def _restore(self, start_update: int) -> None:
        """On resume: the kept best parameters, and ``evaluations.jsonl`` without records past ``start_update``
        (the updates after the last checkpoint run again and evaluate again)."""
        path = self.run.evaluations
        if self.primary and os.path.isfile(path):
            with open(path) as f:
                lines = [line for line in f if line.strip() and json.loads(line)["update"] <= start_update]
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                f.writelines(lines)
            os.replace(tmp, path)
        best_file = self.run.best_scores
        if not os.path.isfile(best_file):
            return
        with open(best_file) as f:
            best = json.load(f)
        if best["checkpoint"] not in self._best.all_steps():
            return
        from jax_mat.training.checkpoint import DamagedCheckpointError, warn

        template = {"params": self.training.abstract_state.params}
        try:
            self.best_params = self._best.restore(template, best["checkpoint"])["params"]
        except DamagedCheckpointError as err:
            # best.json's scores belong to this checkpoint alone, so an older one cannot stand in for it.
            kept = self._best.set_aside(err.step)
            if self.primary:
                warn(f"best parameters: {err}; they start afresh at the next evaluation; it is kept as {kept}")
            return
        self.best_scores = np.asarray(best["scores"], np.float64)
        self.best_updates = np.asarray(best["updates"], np.int64)


def read_evaluations(run_dir: str) -> list[dict[str, Any]]:
    """The records of a run's ``evaluations.jsonl`` (empty if it has none)."""
    path = RunDir(run_dir).evaluations
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def marl_eval_record(env_name: str, task: str, algorithm: str, evaluations: Sequence[Mapping[str, Any]],
                     absolute: Sequence[Mapping[str, Sequence[float]]], has_wins: bool) -> dict:
    """marl-eval's raw-data layout for one run: ``{env: {task: {algorithm: {run_<seed>: ...}}}}``.

    ``evaluations``: ``evaluations.jsonl`` records; ``absolute``: per seed ``{"episode_return": [...],
    "episode_won": [...]}`` of the absolute metric.
    """
    def metrics(episodes: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
        out = {"return": [float(x) for x in episodes["episode_return"]]}
        if has_wins:
            out["win_rate"] = [float(x) for x in episodes["episode_won"]]
        return out

    runs = {}
    for seed, absolute_episodes in enumerate(absolute):
        records = sorted((r for r in evaluations if r["seed"] == seed), key=lambda r: r["update"])
        run = {f"step_{i}": {"step_count": int(r["env_steps"]), **metrics(r)} for i, r in enumerate(records)}
        run["absolute_metrics"] = metrics(absolute_episodes)
        runs[f"run_{seed}"] = run
    return {env_name: {task: {algorithm: runs}}}


def merge_marl_eval(records: Sequence[Mapping]) -> dict:
    """Several runs' ``marl_eval_record``s as one file's content (runs of the same environment, task and
    algorithm are numbered on: ``run_0`` .. ``run_{n-1}``)."""
    merged: dict = {}
    for record in records:
        for env_name, tasks in record.items():
            for task, algorithms in tasks.items():
                for algorithm, runs in algorithms.items():
                    slot = merged.setdefault(env_name, {}).setdefault(task, {}).setdefault(algorithm, {})
                    for run in runs.values():
                        slot[f"run_{len(slot)}"] = run
    return merged
