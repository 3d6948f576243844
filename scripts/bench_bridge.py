"""Host-bridge overhead: env-steps/s through the bridge inside a jitted loop vs a plain Python loop.

Usage: python scripts/bench_bridge.py [--envs 8 32] [--steps 200] [--repeats 3] [--workers 2] [--hosts smax count]

For each host environment and environment count, one pool of worker processes
is stepped two ways, interleaved ``--repeats`` times: by ``rollout.make_random_rollout``
(a jitted ``lax.scan`` whose every step is one ordered ``io_callback`` into the
pool, actions drawn in JAX) and by a plain Python loop calling ``pool.step`` with
numpy-drawn random available actions. Prints the median env-steps/s of each and
their time ratio (bridge / plain loop; 1.30 = 30% overhead). Hosts: ``smax`` is
the SMAC-API stand-in playing SMAX 3m (tests/standins/smax_smac.py, run from the
repository root), ``count`` the near-free numpy SMAC-API game
(tests/standins/faulty_smac.py), which shows the bridge's own cost.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

# The stand-ins are modules of the repository's tests/ package, imported by name in the worker processes,
# which inherit this sys.path: put the repository root on it (a script's own folder is there instead).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

HOSTS = {
    "smax": ("3m", "tests.standins.smax_smac:StarCraft2Env"),
    "count": ("count", "tests.standins.faulty_smac:StarCraft2Env"),
}


def _plain_loop(pool, avail, n_steps: int, rng) -> float:
    """Seconds for ``n_steps`` pool steps from Python with random available actions."""
    import numpy as np

    start = time.perf_counter()
    for _ in range(n_steps):
        actions = np.argmax(rng.random(avail.shape) * (avail > 0), axis=-1).astype(np.int32)
        avail = pool.step(actions)["avail"]
    return time.perf_counter() - start


def bench(host: str, n_envs: int, n_workers: int, n_steps: int, repeats: int) -> tuple[float, float]:
    """Median env-steps/s (plain loop, bridge in jit) for one host environment and pool size."""
    import jax
    import numpy as np

    from jax_mat.envs.host_bridge import HostBridgeEnv
    from jax_mat.host.pool import BatchRecipe
    from jax_mat.training.rollout import make_random_rollout

    map_name, factory = HOSTS[host]
    env_kwargs = {"episode_limit": 50} if host == "count" else {}
    recipe = BatchRecipe("jax_mat.host.smac_api:open_smac_batch",
                         {"map_name": map_name, "env_factory": factory, "env_kwargs": env_kwargs}, host)
    env = HostBridgeEnv(recipe, workers_for=lambda e: n_workers)
    try:
        reset = jax.jit(lambda k: env.reset_batch(k, n_envs))  # one traced reset: one pool, reset again below
        state, timestep = reset(jax.random.PRNGKey(0))
        rollout = make_random_rollout(env, n_steps)
        state, timestep = jax.block_until_ready(rollout(state, timestep, jax.random.PRNGKey(1)))  # compiles
        pool, rng = env.pool_of(state), np.random.default_rng(0)
        _plain_loop(pool, np.asarray(timestep.avail), n_steps // 4, rng)  # warm, untimed
        bridge_s, loop_s = [], []
        for i in range(repeats):
            start = time.perf_counter()
            state, timestep = jax.block_until_ready(rollout(state, timestep, jax.random.PRNGKey(2 + i)))
            bridge_s.append(time.perf_counter() - start)
            loop_s.append(_plain_loop(pool, np.asarray(timestep.avail), n_steps, rng))
            state, timestep = reset(jax.random.PRNGKey(100 + i))  # the loop moved the episodes on: start afresh
    finally:
        env.close()
    steps = n_envs * n_steps
    return steps / statistics.median(loop_s), steps / statistics.median(bridge_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=list(HOSTS))
    args = parser.parse_args()
    print(f"steps={args.steps} repeats={args.repeats} workers={args.workers} "
          "(medians; ratio = bridge time / loop time)")
    print("| host env | envs | plain loop env-steps/s | bridge in jit env-steps/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for host in args.hosts:
        for n_envs in args.envs:
            loop, bridge = bench(host, n_envs, args.workers, args.steps, args.repeats)
            print(f"| {host} | {n_envs} | {loop:,.0f} | {bridge:,.0f} | {loop / bridge:.2f} |", flush=True)


if __name__ == "__main__":
    main()
