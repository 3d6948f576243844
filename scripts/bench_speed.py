#!/usr/bin/env python
"""Training speed of algorithms side by side: wall time per million environment steps (report Fig. 16).

    python scripts/bench_speed.py [CONFIG] [key=value ...] [--variants mat marwkv:scan marwkv:pallas]
                                  [--updates 3] [--plot speed.png]

A variant is ``ALGO`` or ``ALGO:WKV_IMPL`` (``algo.wkv_impl`` for the RWKV algorithms: ``scan``, the
``lax.scan`` reference, or ``pallas``, the Pallas kernels, GPU only). Each variant's jitted
``Trainer.update`` (rollout + PPO epochs) is timed after compilation, median of ``--updates`` calls, on
the same config (default: SMAX 3m, the default run's rollout shape). Variants the machine cannot run
(Pallas without a GPU) are listed as skipped with the reason. ``--plot`` draws the minutes per million
steps as bars.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

from jax_mat import config as config_lib
from jax_mat.benchmarking import make_trainer, time_steps


def time_variant(name: str | None, overrides: list[str], variant: str, updates: int) -> dict:
    algo, _, impl = variant.partition(":")
    cfg, trainer = make_trainer(name, [*overrides, f"algo={algo}", *([f"algo.wkv_impl={impl}"] if impl else [])])
    start = time.perf_counter()
    state = jax.jit(trainer.init)(jax.random.PRNGKey(cfg.seed))
    init_s = time.perf_counter() - start
    update = jax.jit(trainer.update, donate_argnums=0)
    _, first_s, per_update = time_steps(lambda s: update(s)[0], state, updates)
    compile_s = init_s + first_s
    steps = cfg.train.n_envs * cfg.train.episode_length
    return {"variant": variant, "compile_s": compile_s, "s_per_update": per_update,
            "min_per_million": per_update * 1e6 / steps / 60, "env_steps_per_s": steps / per_update}


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 0.6 * len(rows) + 1.4), dpi=120)
    ax.barh([r["variant"] for r in rows], [r["min_per_million"] for r in rows], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("wall time per million environment steps (minutes)")
    ax.set_title(title, fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*")
    parser.add_argument("--variants", nargs="+", default=["mat", "marwkv:scan", "marwkv:pallas"])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--plot")
    args = parser.parse_intermixed_args(argv)  # key=value overrides before or after the options
    name, overrides = config_lib.split_cli_args(args.items)
    rows, skipped = [], []
    for variant in args.variants:
        try:
            rows.append(time_variant(name, overrides, variant, args.updates))
        except ValueError as err:
            skipped.append((variant, str(err)))
    device = jax.devices()[0]
    title = f"{' '.join(args.items) or 'default config'} on {device.platform} ({device.device_kind})"
    print(title)
    print(f"{'variant':16s} {'compile s':>10s} {'s/update':>9s} {'min per 1M steps':>17s} {'env-steps/s':>12s}")
    for r in rows:
        print(f"{r['variant']:16s} {r['compile_s']:10.1f} {r['s_per_update']:9.2f} {r['min_per_million']:17.1f} "
              f"{r['env_steps_per_s']:12,.0f}")
    for variant, reason in skipped:
        print(f"{variant:16s} skipped: {reason}")
    if args.plot and rows:
        plot(rows, args.plot, title)
        print(f"wrote {os.path.abspath(args.plot)}")
    return 0 if rows else 2


if __name__ == "__main__":
    sys.exit(main())
