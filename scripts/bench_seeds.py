#!/usr/bin/env python
"""Seed sweeps: wall time of S seeds as one vmapped program vs one seed, in one run.

    python scripts/bench_seeds.py [CONFIG] [key=value ...] [--seeds 1 8] [--updates 3]

Default: MAT on SMAX 3m with the default run's rollout shape (32 envs x 100 steps, 10 epochs).
For each seed count S, times ``jax.jit(jax.vmap(trainer.update))`` (plain ``trainer.update`` for
S = 1) after compilation, median of ``--updates`` calls, and prints the wall time per update, the
environment steps per second summed over seeds, and the speed-up over running the S seeds one
after another (S x the one-seed time).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax

from jax_mat import config as config_lib
from jax_mat.benchmarking import make_trainer, time_steps
from jax_mat.training import sweep
from jax_mat.training.runner import Trainer


def time_updates(trainer: Trainer, n_seeds: int, updates: int) -> tuple[float, float]:
    """(compile + first update seconds, median seconds per update) of ``n_seeds`` seeds at once."""
    cfg = dataclasses.replace(trainer.config, train=dataclasses.replace(trainer.config.train, seeds=n_seeds))
    trainer = dataclasses.replace(trainer, config=cfg)
    start = time.perf_counter()
    state = jax.jit(sweep.over_seeds(trainer.init, n_seeds))(sweep.run_keys(cfg.seed, n_seeds))
    init_s = time.perf_counter() - start
    update = jax.jit(sweep.over_seeds(trainer.update, n_seeds), donate_argnums=0)
    _, first_s, per_update = time_steps(lambda s: update(s)[0], state, updates)
    return init_s + first_s, per_update


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--updates", type=int, default=3)
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after the options
    name, overrides = config_lib.split_cli_args(args.items)
    try:
        cfg, trainer = make_trainer(name, overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    steps = cfg.train.n_envs * cfg.train.episode_length
    rows = [(s, *time_updates(trainer, s, args.updates)) for s in args.seeds]
    one = dict((s, t) for s, _, t in rows).get(1)
    print(f"{cfg.algo.name} on {cfg.env.name}:{cfg.env.variant}, {cfg.train.n_envs} envs x "
          f"{cfg.train.episode_length} steps, {cfg.algo.ppo_epochs} epochs, backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind})")
    print(f"{'seeds':>5} {'compile s':>10} {'s/update':>9} {'env-steps/s (all seeds)':>24} {'vs seeds one by one':>20}")
    for s, compile_s, t in rows:
        versus = f"{s * one / t:.2f}x" if one else "-"
        print(f"{s:>5} {compile_s:>10.1f} {t:>9.2f} {s * steps / t:>24,.0f} {versus:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
