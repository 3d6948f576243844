#!/usr/bin/env python
"""Seed sweeps: wall time of S seeds as one vmapped program vs one seed, in one run.

    python scripts/bench_seeds.py [CONFIG] [key=value ...] [--seeds 1 8] [--updates 3] [--json] [--build-only]
    python scripts/bench_seeds.py env.map=3s5z --seeds 1 8 32 --updates 2 --json   # the paper's 3s5z shape

Default: MAT on SMAX 3m with the default run's rollout shape (32 envs x 100 steps, 10 epochs).
For each seed count S, times ``jax.jit(jax.vmap(trainer.update))`` (plain ``trainer.update`` for
S = 1) after compilation, median of ``--updates`` calls, and prints the wall time per update, the
environment steps per second summed over seeds, and the speed-up over running the S seeds one
after another (S x the one-seed time). ``--json`` adds one JSON line per seed count, with the
update program's peak memory (``jax_mat.benchmarking.peak_bytes``) and the wall time against
one seed's (``time_vs_one_seed``: the "S seeds in at most k x one seed's time" figure).
``--build-only`` checks the config and builds the trainer, compiles nothing, and prints one JSON
line per seed count with ``"status": "built"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax

from jax_mat import config as config_lib
from jax_mat.benchmarking import make_trainer, peak_bytes, time_steps
from jax_mat.training import sweep
from jax_mat.training.runner import Trainer


def time_updates(trainer: Trainer, n_seeds: int, updates: int) -> tuple[float, float, int]:
    """(compile + first update seconds, median seconds per update, the update program's peak bytes) of
    ``n_seeds`` seeds at once."""
    cfg = dataclasses.replace(trainer.config, train=dataclasses.replace(trainer.config.train, seeds=n_seeds))
    trainer = dataclasses.replace(trainer, config=cfg)
    start = time.perf_counter()
    state = jax.jit(sweep.over_seeds(trainer.init, n_seeds))(sweep.run_keys(cfg.seed, n_seeds))
    update = jax.jit(sweep.over_seeds(trainer.update, n_seeds), donate_argnums=0).lower(state).compile()
    init_s = time.perf_counter() - start
    _, first_s, per_update = time_steps(lambda s: update(s)[0], state, updates)
    return init_s + first_s, per_update, peak_bytes(update)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print one JSON line per seed count")
    parser.add_argument("--build-only", action="store_true", help="check the config and build the trainer only")
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after the options
    name, overrides = config_lib.split_cli_args(args.items)
    try:
        cfg, trainer = make_trainer(name, overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    steps = cfg.train.n_envs * cfg.train.episode_length
    if args.build_only:
        for s in args.seeds:
            print(json.dumps(dict(algo=cfg.algo.name, env=cfg.env.name, variant=cfg.env.variant, seeds=s,
                                  n_envs=cfg.train.n_envs, status="built")))
        return 0
    rows = [(s, *time_updates(trainer, s, args.updates)) for s in args.seeds]
    one = dict((s, t) for s, _, t, _ in rows).get(1)
    print(f"{cfg.algo.name} on {cfg.env.name}:{cfg.env.variant}, {cfg.train.n_envs} envs x "
          f"{cfg.train.episode_length} steps, {cfg.algo.ppo_epochs} epochs, backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind})")
    print(f"{'seeds':>5} {'compile s':>10} {'s/update':>9} {'env-steps/s (all seeds)':>24} {'vs seeds one by one':>20}")
    for s, compile_s, t, peak in rows:
        versus = f"{s * one / t:.2f}x" if one else "-"
        print(f"{s:>5} {compile_s:>10.1f} {t:>9.2f} {s * steps / t:>24,.0f} {versus:>20}")
        if args.json:
            print(json.dumps(dict(algo=cfg.algo.name, env=cfg.env.name, variant=cfg.env.variant, seeds=s,
                                  n_envs=cfg.train.n_envs, episode_length=cfg.train.episode_length,
                                  compile_s=compile_s, s_per_update=t, env_steps_per_s=s * steps / t,
                                  time_vs_one_seed=t / one if one else None, update_peak_bytes=peak,
                                  backend=jax.default_backend(), device=jax.devices()[0].device_kind)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
