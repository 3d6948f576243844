#!/usr/bin/env python
"""End-to-end training throughput vs the environment alone, in one run.

    python scripts/bench_train.py [CONFIG] [key=value ...] [--updates 5] [--json] [--build-only]
    python scripts/bench_train.py env=mujoco env.task=halfcheetah_6x1
    python scripts/bench_train.py env.map=3s5z train.n_envs=4096 --updates 2 --json

Default: MAT on SMAX 3s5z with the report's rollout shape (32 envs x 100
steps per update, 10 epochs, 1 minibatch); ``env=mujoco`` uses the report's
Table 4 shape (40 envs x 100 steps, 10 epochs, 40 minibatches). Times jitted
PPO updates after compilation (median over ``--updates``), then the same
environments stepping random valid actions for the same number of steps, and
prints both, their ratio and the compile times (each includes the first call).

Memory: ``update_peak_bytes`` is what the compiled update program holds at
once (XLA's ``memory_analysis()``: arguments + outputs + temporaries, less
aliased buffers), on any backend; ``device_peak_bytes`` is the device
allocator's peak over the whole process (``memory_stats()``, GPUs and TPUs;
``null`` on a CPU). ``--json`` adds all figures as one JSON line on stdout;
``--build-only`` builds the config, environment and trainer, compiles
nothing, and prints that JSON line with ``"status": "built"``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax

from jax_mat import config as config_lib
from jax_mat.benchmarking import device_peak_bytes, make_trainer, peak_bytes, time_steps
from jax_mat.training import rollout as rollout_lib


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON line")
    parser.add_argument("--build-only", action="store_true", help="check the config and build the trainer only")
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after the options
    name, overrides = config_lib.split_cli_args(args.items)
    try:
        cfg, trainer = make_trainer(name, overrides or ["env.map=3s5z"])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = trainer.env
    steps = cfg.train.n_envs * cfg.train.episode_length
    shape = dict(algo=cfg.algo.name, env=cfg.env.name, variant=cfg.env.variant, n_envs=cfg.train.n_envs,
                 episode_length=cfg.train.episode_length, ppo_epochs=cfg.algo.ppo_epochs,
                 num_mini_batch=cfg.algo.num_mini_batch, backend=jax.default_backend(),
                 device=jax.devices()[0].device_kind)
    if args.build_only:
        print(json.dumps(dict(shape, status="built")))
        return 0

    start = time.perf_counter()
    state = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    update = jax.jit(trainer.update).lower(state).compile()
    init_s = time.perf_counter() - start
    update_peak = peak_bytes(update)
    _, first_s, update_s = time_steps(lambda s: update(s)[0], state, args.updates)
    compile_s = init_s + first_s

    env_state, timestep = jax.jit(env.reset_batch, static_argnums=1)(jax.random.PRNGKey(1), cfg.train.n_envs)
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
    device_peak = device_peak_bytes()
    print(f"{'update program peak (MiB)':32s} {update_peak / 2**20:12,.1f}")
    if device_peak is not None:
        print(f"{'device peak, process (MiB)':32s} {device_peak / 2**20:12,.1f}")
    if args.json:
        print(json.dumps(dict(shape, status="ok", train_env_steps_per_s=train_sps, env_only_steps_per_s=env_sps,
                              s_per_update=update_s, compile_s=compile_s, env_compile_s=env_compile_s,
                              update_peak_bytes=update_peak, device_peak_bytes=device_peak)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
