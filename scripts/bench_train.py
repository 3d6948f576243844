#!/usr/bin/env python
"""End-to-end training throughput vs the environment alone, in one run.

    python scripts/bench_train.py [CONFIG] [key=value ...] [--updates 5]
    python scripts/bench_train.py env=mujoco env.task=halfcheetah_6x1

Default: MAT on SMAX 3s5z with the report's rollout shape (32 envs x 100
steps per update, 10 epochs, 1 minibatch); ``env=mujoco`` uses the report's
Table 4 shape (40 envs x 100 steps, 10 epochs, 40 minibatches). Times jitted
PPO updates after compilation (median over ``--updates``), then the same
environments stepping random valid actions for the same number of steps, and
prints both, their ratio and the compile times (each includes the first call).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax

from jax_mat import config as config_lib
from jax_mat.benchmarking import make_trainer, time_steps
from jax_mat.training import rollout as rollout_lib


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*")
    parser.add_argument("--updates", type=int, default=5)
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after the options
    name, overrides = config_lib.split_cli_args(args.items)
    try:
        cfg, trainer = make_trainer(name, overrides or ["env.map=3s5z"])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = trainer.env
    steps = cfg.train.n_envs * cfg.train.episode_length

    start = time.perf_counter()
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    init_s = time.perf_counter() - start
    update = jax.jit(trainer.update)
    _, first_s, update_s = time_steps(lambda s: update(s)[0], state, args.updates)
    compile_s = init_s + first_s

    env_state, timestep = jax.jit(rollout_lib.reset_envs, static_argnums=(0, 2))(env, jax.random.PRNGKey(1),
                                                                               cfg.train.n_envs)
    rollout = rollout_lib.make_random_rollout(env, cfg.train.episode_length)
    # Each call a fresh key, split inside the jitted rollout's input: (env_state, timestep, key) -> the next.
    def env_step(carry):
        env_state, timestep, key = carry
        key, sub = jax.random.split(key)
        return (*rollout(env_state, timestep, sub), key)

    _, env_compile_s, env_s = time_steps(env_step, (env_state, timestep, jax.random.PRNGKey(2)), args.updates)

    train_sps = steps / update_s
    env_sps = steps / env_s
    print(f"{cfg.algo.name} on {cfg.env.name}:{cfg.env.variant}, {cfg.train.n_envs} envs x {cfg.train.episode_length} steps, "
          f"{cfg.algo.ppo_epochs} epochs x {cfg.algo.num_mini_batch} minibatches, backend {jax.default_backend()}")
    print(f"{'what':32s} {'env-steps/s':>12s}")
    print(f"{'training (rollout+update)':32s} {train_sps:12,.0f}")
    print(f"{'environment alone (random)':32s} {env_sps:12,.0f}")
    print(f"{'ratio train/env':32s} {train_sps / env_sps:12.3f}")
    print(f"{'compile + first update (s)':32s} {compile_s:12.1f}")
    print(f"{'env compile + first rollout (s)':32s} {env_compile_s:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
