#!/usr/bin/env python
"""Training throughput against the number of devices, in one run.

    python scripts/bench_devices.py [CONFIG] [key=value ...] [--devices 1 2 4] [--updates 3]

For each device count a fresh process trains with ``train.devices=N`` (the environments split
over N devices, ``jax_mat.training.distributed``): it times jitted PPO updates after compilation
(median over ``--updates``) and prints one JSON line; this process prints the table. Every
process is started with ``--xla_force_host_platform_device_count`` set to the largest count, so
on a CPU-only machine the devices are *fake* CPU devices sharing the same cores: the table then
measures the cost of partitioning (collectives, the shuffle's row exchange), not a speed-up. On a
GPU or TPU machine the same command uses the real devices (the flag affects only the host platform).

Columns: env-steps/s; the ratio to the first device count of the same run; compile + first update;
and XLA's cost-analysis FLOPs of one device's update program relative to the first count
(loop bodies counted once), which shows the work is split rather than replicated.
Default: MAT on SMAX 3m with the default rollout (32 envs x 100 steps, 10 epochs, 1 minibatch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(devices: int, updates: int, items: list[str]) -> dict:
    import jax

    from jax_mat import config as config_lib
    from jax_mat.benchmarking import time_steps
    from jax_mat.training import distributed
    from jax_mat.training.runner import make_trainer

    name, overrides = config_lib.split_cli_args(items)
    cfg = config_lib.load_config(name, [*overrides, f"train.devices={devices}"])
    training = distributed.shard_training(make_trainer(cfg), distributed.mesh_from_config(cfg.train))
    start = time.perf_counter()
    state = training.init(jax.random.PRNGKey(0))
    compiled = training.update_program.lower(state).compile()
    init_s = time.perf_counter() - start
    _, first_s, per_update = time_steps(lambda s: compiled(s)[0], state, updates)
    compile_s = init_s + first_s
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {
        "devices": devices,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "config": f"{cfg.algo.name} on {cfg.env.name}:{cfg.env.variant}, {cfg.train.n_envs} envs x "
                  f"{cfg.train.episode_length} steps, {cfg.algo.ppo_epochs} epochs x {cfg.algo.num_mini_batch} minibatches",
        "env_steps_per_s": cfg.batch_size / per_update,
        "update_s": per_update,  # the median update
        "compile_s": compile_s,
        "flops_per_device": float(cost.get("flops", float("nan"))),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="[CONFIG] key=value")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after the options
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.updates, args.items)), flush=True)
        return 0

    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                      f"--xla_force_host_platform_device_count={max(args.devices)}".strip()}
    rows = []
    for devices in args.devices:
        proc = subprocess.run([sys.executable, __file__, *args.items, "--worker", str(devices), "--updates",
                               str(args.updates)], env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr[-3000:])
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    base = rows[0]
    print(f"{base['config']}; {base['platform']} ({base['device_kind']}), {os.cpu_count()} CPU cores")
    print(f"| devices | env-steps/s | vs {base['devices']} | compile + first update (s) | FLOPs/device vs {base['devices']} |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['devices']} | {row['env_steps_per_s']:,.0f} | {row['env_steps_per_s'] / base['env_steps_per_s']:.2f}x "
              f"| {row['compile_s']:.1f} | {row['flops_per_device'] / base['flops_per_device']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
