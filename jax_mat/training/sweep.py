"""Seed sweeps: several independent runs as one ``jax.vmap``-ped program, and their statistics.

Seed ``k`` of a sweep whose base seed is ``s`` is exactly the single run with
``seed = s + k``: its key is ``PRNGKey(s + k)``, and ``jax.vmap`` of the
trainer's pure functions over those keys changes nothing else. Statistics
over seeds are the mean, the standard deviation and the interquartile mean
(IQM: the mean of the middle half, Agarwal et al., 2021), ignoring seeds
whose value is NaN (no episode finished, say).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_mat.statistics import interquartile_mean


def seed_keys(base_seed: int, n_seeds: int) -> jax.Array:
    """``[n_seeds, 2]`` keys: ``PRNGKey(base_seed + k)`` for seed ``k``."""
    return jnp.stack([jax.random.PRNGKey(base_seed + k) for k in range(n_seeds)])


# Evaluation results that are one value per episode (``Trainer.evaluate``), not one per seed.
EPISODE_FIELDS = ("episode_return", "episode_won")


def split_seeds(tree: Mapping[str, Any], n_seeds: int) -> list[dict[str, float]]:
    """``{name: [S]}`` device arrays -> one ``{name: float}`` per seed (per-episode fields are left out)."""
    host = jax.device_get({k: v for k, v in tree.items() if k not in EPISODE_FIELDS})
    return [{k: float(np.asarray(v).reshape(n_seeds)[s]) for k, v in host.items()} for s in range(n_seeds)]


def split_episodes(tree: Mapping[str, Any], n_seeds: int) -> list[dict[str, list[float]]]:
    """The per-episode fields of an evaluation, ``{name: [S, episodes]}`` -> one ``{name: [floats]}`` per seed."""
    host = jax.device_get({k: tree[k] for k in EPISODE_FIELDS if k in tree})
    return [{k: np.asarray(v).reshape(n_seeds, -1)[s].astype(float).tolist() for k, v in host.items()}
            for s in range(n_seeds)]


def statistics(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``std`` (population) and ``iqm`` of the finite ``values`` (NaN where none is finite)."""
    finite = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "iqm": math.nan}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "iqm": interquartile_mean(finite)}


def aggregate(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``{name: statistics over seeds}`` for every name the seeds report."""
    names = sorted({k for seed in per_seed for k in seed})
    return {k: statistics([seed.get(k, math.nan) for seed in per_seed]) for k in names}


def over_seeds(fn, n_seeds: int, spmd_axis_name: str | None = None):
    """``jax.vmap(fn)`` for a sweep, ``fn`` itself for a single seed (whose state has no seed axis).

    ``spmd_axis_name``: the mesh axis the seeds are split over (``training.distributed``).
    """
    return jax.vmap(fn, spmd_axis_name=spmd_axis_name) if n_seeds > 1 else fn


def run_keys(base_seed: int, n_seeds: int) -> jax.Array:
    """The key(s) ``Trainer.init`` starts from: ``[S, 2]`` for a sweep, ``[2]`` for a single seed."""
    keys = seed_keys(base_seed, n_seeds)
    return keys if n_seeds > 1 else keys[0]


def state_template(trainer) -> Any:
    """The shapes and dtypes of a run's ``RunnerState`` (every seed's, stacked, for a sweep): what
    checkpoints restore into."""
    n_seeds = trainer.config.train.seeds
    return jax.eval_shape(over_seeds(trainer.init, n_seeds), run_keys(trainer.config.seed, n_seeds))


def summarize(per_seed: Sequence[Mapping[str, float]], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``eval.json``: one seed's results, or for a sweep the mean over seeds at the top level plus
    ``per_seed`` and ``statistics`` (mean, std, IQM of each quantity); ``extra`` is added as is."""
    if len(per_seed) == 1:
        return {**per_seed[0], **extra}
    stats = aggregate(per_seed)
    return {**{k: v["mean"] for k, v in stats.items()}, **extra, "per_seed": list(per_seed), "statistics": stats}
