"""Host-bridge overhead: env-steps/s through the bridge inside a jitted loop vs a plain Python loop.

Usage: python scripts/bench_bridge.py [--envs 8 32] [--steps 200] [--repeats 3] [--workers 2] [--hosts smax count]

For each host environment and environment count, one pool of worker processes
is stepped two ways, interleaved ``--repeats`` times: by ``rollout.make_random_rollout``
(a jitted ``lax.scan`` whose every step is one ordered ``io_callback`` into the
pool, actions drawn in JAX) and by a plain Python loop calling ``pool.step`` with
numpy-drawn random available actions. Prints the median env-steps/s of each and
their time ratio (bridge / plain loop; 1.30 = 30% overhead), and the CPU time per
pool step of this process and of the workers (``/proc``) in each mode: on a
shared machine wall times swing with other load, CPU time much less, so the
CPU columns show what the bridge itself adds. Hosts: ``smax`` is
the SMAC-API stand-in playing SMAX 3m (jax_mat/standins/smax_smac.py), ``count``
the near-free numpy SMAC-API game (tests/standins/faulty_smac.py, run from the
repository root), which shows the bridge's own cost.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

# The stand-ins are modules of the repository's tests/ package, imported by name in the worker processes,
# which inherit this sys.path: put the repository root on it (a script's own folder is there instead).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

HOSTS = {
    "smax": ("3m", "jax_mat.standins.smax_smac:StarCraft2Env"),
    "count": ("count", "tests.standins.faulty_smac:StarCraft2Env"),
}


def _cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by this process and by the processes ``pids``."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return own.ru_utime + own.ru_stime, ticks / os.sysconf("SC_CLK_TCK")


def _measured(run, pids: list[int]) -> tuple[float, float, float]:
    """``run()``'s wall seconds, this process's CPU seconds and the workers' CPU seconds."""
    own, workers = _cpu_seconds(pids)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    own_after, workers_after = _cpu_seconds(pids)
    return wall, own_after - own, workers_after - workers


def _plain_loop(pool, avail, n_steps: int, rng) -> None:
    """``n_steps`` pool steps from Python with random available actions."""
    import numpy as np

    for _ in range(n_steps):
        actions = np.argmax(rng.random(avail.shape) * (avail > 0), axis=-1).astype(np.int32)
        avail = pool.step(actions)["avail"]


def bench(host: str, n_envs: int, n_workers: int, n_steps: int, repeats: int) -> dict[str, list[float]]:
    """Per mode (``loop``, ``bridge``) and repeat: wall, own CPU and workers' CPU seconds of ``n_steps`` steps."""
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
        state, timestep = reset(jax.random.PRNGKey(99))  # the loop moved the episodes on: start afresh
        pids = pool.worker_pids()
        runs = {"loop": [], "bridge": []}
        for i in range(repeats):
            out = []
            runs["bridge"].append(_measured(
                lambda: out.append(jax.block_until_ready(rollout(state, timestep, jax.random.PRNGKey(2 + i)))), pids))
            state, timestep = out[0]
            runs["loop"].append(_measured(lambda: _plain_loop(pool, np.asarray(timestep.avail), n_steps, rng), pids))
            state, timestep = reset(jax.random.PRNGKey(100 + i))
        if pool.stats.restarts:
            raise RuntimeError(f"{host}: {pool.stats.restarts} worker restarts during the benchmark; timings void")
    finally:
        env.close()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=list(HOSTS))
    args = parser.parse_args()
    print(f"steps={args.steps} repeats={args.repeats} workers={args.workers} (medians; ratio = bridge / loop; "
          "CPU = ms per pool step, this process + workers)")
    print("| host env | envs | plain loop env-steps/s | bridge in jit env-steps/s | time ratio "
          "| CPU loop | CPU bridge | CPU ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for host in args.hosts:
        for n_envs in args.envs:
            runs = bench(host, n_envs, args.workers, args.steps, args.repeats)
            wall, own, workers = ({m: statistics.median(r[k] for r in runs[m]) for m in runs} for k in range(3))
            ms = {m: (1e3 * own[m] / args.steps, 1e3 * workers[m] / args.steps) for m in runs}  # CPU ms per step
            steps = n_envs * args.steps
            print(f"| {host} | {n_envs} | {steps / wall['loop']:,.0f} | {steps / wall['bridge']:,.0f} "
                  f"| {wall['bridge'] / wall['loop']:.2f} | {ms['loop'][0]:.1f} + {ms['loop'][1]:.1f} "
                  f"| {ms['bridge'][0]:.1f} + {ms['bridge'][1]:.1f} | {sum(ms['bridge']) / sum(ms['loop']):.2f} |",
                  flush=True)

if __name__ == "__main__":
    main()
