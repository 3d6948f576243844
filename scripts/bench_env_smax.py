"""Env-only SMAX throughput: jitted, vmapped ``lax.scan`` with random valid actions.

Usage: python scripts/bench_env_smax.py [--maps 3m 3s5z] [--envs 128] [--steps 100] [--repeats 3]
Prints one row per map: compile time and environment steps per second
(one step = one environment advancing once; multiply by N for agent-steps).
"""

from __future__ import annotations

import argparse
import time

import jax

from jax_mat.envs import make_env
from jax_mat.training.rollout import make_random_rollout as make_rollout


def bench(map_name: str, n_envs: int, n_steps: int, repeats: int) -> tuple[float, float]:
    """Returns (compile seconds, env steps per second) for one map."""
    env = make_env("smax", map_name=map_name)
    key = jax.random.PRNGKey(0)
    state, timestep = jax.jit(jax.vmap(env.reset))(jax.random.split(key, n_envs))
    rollout = make_rollout(env, n_steps)
    start = time.perf_counter()
    state, timestep = jax.block_until_ready(rollout(state, timestep, key))
    compile_s = time.perf_counter() - start
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        state, timestep = jax.block_until_ready(rollout(state, timestep, jax.random.fold_in(key, i)))
        best = min(best, time.perf_counter() - start)
    return compile_s, n_envs * n_steps / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "3s5z"])
    parser.add_argument("--envs", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"backend={jax.default_backend()} envs={args.envs} steps={args.steps}")
    print(f"{'map':<14}{'compile s':>10}{'env steps/s':>14}")
    for map_name in args.maps:
        compile_s, rate = bench(map_name, args.envs, args.steps, args.repeats)
        print(f"{map_name:<14}{compile_s:>10.1f}{rate:>14,.0f}")


if __name__ == "__main__":
    main()
