"""Train a policy: ``python -m jax_mat.train [CONFIG] [key=value ...]``.

Examples::

    python -m jax_mat.train                                  # MAT on SMAX 3m, minutes on a CPU
    python -m jax_mat.train env.map=3s5z algo.lr=1e-3 train.total_steps=2e6 seed=3
    python -m jax_mat.train smax_2s3z --run-dir runs/mine
    python -m jax_mat.train --resume runs/mat-smax-3m-20261124-101500

Every configuration error is reported before anything is compiled or
written. A run directory holds ``config.yaml`` (the resolved config),
``tb/`` (TensorBoard), ``checkpoints/`` (orbax) and ``eval.json``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
from typing import Sequence

from jax_mat import config as config_lib

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"


class TrainingError(RuntimeError):
    """Training stopped (a NaN loss); the message names the update."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jax_mat.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="[CONFIG] key=value",
                        help="an optional config name or YAML path, then dotted overrides")
    parser.add_argument("--run-dir", help="where to write the run (default runs/<name>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> tuple[config_lib.Config, str, bool]:
    """The config, the run directory and whether it resumes; raises ``ValueError`` on bad input."""
    name, overrides = config_lib.split_cli_args(args.items)
    if args.resume:
        if name is not None or args.run_dir:
            raise ValueError("--resume takes its config from the run directory; pass only key=value overrides")
        run_dir = args.resume
        config_path = os.path.join(run_dir, CONFIG_FILE)
        if not os.path.isdir(run_dir):
            raise ValueError(f"--resume: no run directory {run_dir}")
        if not os.path.isfile(config_path):
            raise ValueError(f"--resume: {run_dir} is not a jax_mat run (no {CONFIG_FILE})")
        cfg = config_lib.config_from_file(config_path, overrides)
        return cfg, run_dir, True
    cfg = config_lib.load_config(name, overrides)
    if args.run_dir:
        run_dir = args.run_dir
        if os.path.exists(os.path.join(run_dir, CONFIG_FILE)):
            raise ValueError(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-dir")
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = os.path.join("runs", f"{cfg.run_name}-{stamp}")
    return cfg, run_dir, False


def _host_metrics(metrics) -> dict[str, float]:
    import jax

    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _nonfinite_problem(metrics: dict[str, float], update: int, steps_per_update: int) -> str | None:
    """What went non-finite in ``update`` (the environment first: a physics blow-up poisons the loss), or None."""
    bad_steps = metrics.get("rollout/nonfinite_steps", 0.0)
    if bad_steps:
        first, last = (update - 1) * steps_per_update + 1, update * steps_per_update
        return (f"the environment returned NaN/inf observations or rewards in update {update} "
                f"({int(bad_steps)} of its env steps {first:,}-{last:,})")
    if not math.isfinite(metrics["loss/total"]):
        return f"NaN/inf in the loss at update {update}"
    return None


def run(cfg: config_lib.Config, run_dir: str, resume: bool, progress: bool = True) -> dict:
    """Train (or continue) the run in ``run_dir``; returns the evaluation results."""
    import jax

    from jax_mat.envs.registry import make_env_from_config
    from jax_mat.networks.registry import make_policy
    from jax_mat.training.checkpoint import Checkpointer
    from jax_mat.training.logging import RunLogger, write_json_atomic
    from jax_mat.training.runner import Trainer

    env = make_env_from_config(cfg.env)
    trainer = Trainer(cfg, env, make_policy(env.spec, cfg.algo))
    checkpointer = Checkpointer(os.path.join(run_dir, CHECKPOINT_DIR))
    key = jax.random.PRNGKey(cfg.seed)
    init = jax.jit(trainer.init)
    if resume:
        state = checkpointer.restore(jax.eval_shape(init, key))
    else:
        os.makedirs(run_dir, exist_ok=True)
        config_lib.save_config(cfg, os.path.join(run_dir, CONFIG_FILE))
        state = init(key)

    steps_per_update = cfg.train.n_envs * cfg.train.episode_length
    total_updates = cfg.num_updates
    done_updates = int(state.update)
    logger = RunLogger(run_dir, total_updates * steps_per_update, done_updates * steps_per_update, progress)
    update = jax.jit(trainer.update, donate_argnums=0)
    try:
        tick = time.perf_counter()
        while done_updates < total_updates:
            state, metrics = update(state)
            metrics = _host_metrics(metrics)
            done_updates += 1
            problem = _nonfinite_problem(metrics, done_updates, steps_per_update)
            if problem:
                last = checkpointer.latest_step()
                raise TrainingError(
                    f"{problem}; stopped. "
                    f"Last good checkpoint: {'none' if last is None else f'update {last}'} in {checkpointer.directory}"
                )
            now = time.perf_counter()
            sps = steps_per_update / max(now - tick, 1e-9)
            tick = now
            env_steps = done_updates * steps_per_update
            if done_updates % cfg.train.log_every == 0 or done_updates == total_updates:
                logger.log(env_steps, metrics, sps)
            logger.advance(steps_per_update)
            if done_updates % cfg.train.checkpoint_every == 0 or done_updates == total_updates:
                checkpointer.save(done_updates, state)
        evaluate = jax.jit(trainer.evaluate, static_argnums=2)
        results = {k: float(v) for k, v in jax.device_get(
            evaluate(state.params, jax.random.PRNGKey(cfg.seed + 10_000), cfg.train.eval_episodes)).items()}
        results.update({"env_steps": total_updates * steps_per_update, "updates": total_updates,
                        "deterministic": True})
        logger.log_eval(total_updates * steps_per_update, results)
        write_json_atomic(os.path.join(run_dir, "eval.json"), results)
        return results
    finally:
        logger.close()
        checkpointer.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg, run_dir, resume = resolve(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        results = run(cfg, run_dir, resume, progress=not args.no_progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - start) / 60
    from jax_mat.envs.registry import has_wins

    win_rate = f"win rate {results['win_rate']:.2f}, " if has_wins(cfg.env) else ""
    print(
        f"\n{cfg.algo.name} on {cfg.env.name}:{cfg.env.variant} — {results['env_steps']:,} env steps in {minutes:.1f} min\n"
        f"evaluation ({int(results['episodes'])} greedy episodes): {win_rate}"
        f"mean return {results['mean_return']:.2f}\n"
        f"run directory: {run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
