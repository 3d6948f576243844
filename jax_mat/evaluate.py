"""Evaluate a run's checkpoint greedily: ``python -m jax_mat.evaluate RUN_DIR [--episodes 32]``.

Loads ``RUN_DIR/config.yaml`` and the last complete (or ``--step``)
checkpoint, plays ``--episodes`` episodes with deterministic actions, prints
the win rate and mean return, and with ``--out FILE`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from jax_mat import config as config_lib
from jax_mat.host.pool import HostEnvFailure
from jax_mat.train import CHECKPOINT_DIR, CONFIG_FILE


def evaluate_run(run_dir: str, episodes: int, step: int | None = None, seed: int = 0) -> dict:
    """Greedy evaluation of a run's checkpoint; raises ``ValueError`` on a bad run directory."""
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    config_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(f"{run_dir} is not a jax_mat run directory (no {CONFIG_FILE})")
    cfg = config_lib.config_from_file(config_path)

    from jax_mat.envs.host_bridge import reporting_host_errors
    from jax_mat.envs.registry import make_env_from_config
    from jax_mat.networks.registry import make_policy
    from jax_mat.training import sweep
    from jax_mat.training.checkpoint import Checkpointer
    from jax_mat.training.runner import Trainer

    env = make_env_from_config(cfg.env)
    trainer = Trainer(cfg, env, make_policy(env.spec, cfg.algo))
    checkpointer = Checkpointer(os.path.join(run_dir, CHECKPOINT_DIR))
    try:
        state = checkpointer.restore(sweep.state_template(trainer), step)
        used_step = step if step is not None else checkpointer.latest_step()
    finally:
        checkpointer.close()
    try:
        with reporting_host_errors(env):
            per_seed = sweep.evaluate_seeds(trainer, state.params, seed, episodes)
    finally:
        if hasattr(env, "close"):
            env.close()  # a host bridge's worker processes
    return sweep.summarize(per_seed, {"checkpoint_update": int(used_step), "seeds": cfg.train.seeds,
                                      "deterministic": True})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jax_mat.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--step", type=int, default=None, help="checkpoint (update number); default the last")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:
        results = evaluate_run(args.run_dir, args.episodes, args.step, args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except HostEnvFailure as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    seeds = f" (mean over {results['seeds']} seeds)" if results["seeds"] > 1 else ""
    print(f"checkpoint update {results['checkpoint_update']}: {int(results['episodes'])} greedy episodes{seeds}, "
          f"win rate {results['win_rate']:.3f}, mean return {results['mean_return']:.3f}, "
          f"mean length {results['mean_length']:.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
