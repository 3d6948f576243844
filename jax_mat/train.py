"""Train a policy: ``python -m jax_mat.train [CONFIG] [key=value ...]``.

Examples::

    python -m jax_mat.train                                  # MAT on SMAX 3m, minutes on a CPU
    python -m jax_mat.train --list                           # what the package knows, one line each
    python -m jax_mat.train env.map=3s5z algo.lr=1e-3 train.total_steps=2e6 seed=3
    python -m jax_mat.train smax_2s3z --run-dir runs/mine
    python -m jax_mat.train --resume runs/mat-smax-3m-20261124-101500
    python -m jax_mat.train train.devices=all                 # environments split over every device
    python -m jax_mat.train --seeds 8 train.devices=4 train.seed_shards=4   # 2 seeds on each of 4 devices
    python -m jax_mat.train --init-from runs/pretrain env=smax_multi env.maps=[5m_vs_6m] env.pad_allies=8 \
        env.pad_enemies=8                                      # fine-tune another run's parameters

Several processes (hosts) run the same command, joined by ``jax.distributed``
(``docs/distributed.md``); only process 0 writes the logs, the config and the
evaluation, and every process takes part in each checkpoint.

Every configuration error is reported before anything is compiled or
written. A run directory holds ``config.yaml`` (the resolved config),
``tb/`` (TensorBoard), ``checkpoints/`` (orbax) and ``eval.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from typing import Sequence

from jax_mat import config as config_lib
from jax_mat.host.pool import HostEnvFailure
from jax_mat.training import run_dir as run_dir_lib


class TrainingError(RuntimeError):
    """Training stopped (a NaN loss); the message names the update."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jax_mat.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*", metavar="[CONFIG] key=value",
                        help="an optional config name or YAML path, then dotted overrides")
    parser.add_argument("--run-dir", help="where to write the run (default runs/<name>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last complete checkpoint")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="train N independent seeds (seed, seed + 1, ...) as one vmapped program (= train.seeds=N)")
    parser.add_argument("--init-from", metavar="RUN_DIR[/checkpoints/<update>]",
                        help="start from another run's parameters and optimiser state (= train.init_from; "
                             "see jax_mat/training/finetune.py)")
    parser.add_argument("--init-seed", type=int, metavar="K",
                        help="with --init-from a seed sweep: start every seed from its seed K (= train.init_seed)")
    parser.add_argument("--reset-optimizer", action="store_true",
                        help="with --init-from: a fresh optimiser state (= train.reset_optimizer=true)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true",
                        help="list the algorithms, environments, maps, tasks and named experiments, then exit")
    parser.add_argument("--version", action="store_true", help="print jax_mat's and its key dependencies' versions")
    # Overrides may come before, between or after the flags (``--init-from RUN env=mujoco ...``).
    return parser.parse_intermixed_args(argv)


_INIT_KEYS = ("train.init_from", "train.init_seed", "train.reset_optimizer")


def _init_overrides(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """``--init-from``/``--init-seed``/``--reset-optimizer`` as overrides; refused on ``--resume``."""
    given = args.init_from is not None or args.init_seed is not None or args.reset_optimizer
    if args.resume and (given or any(o.partition("=")[0].strip() in _INIT_KEYS for o in overrides)):
        raise ValueError("--resume continues a run from its own checkpoints: --init-from, --init-seed and "
                         "--reset-optimizer apply to a new run only")
    extra = []
    if args.init_from is not None:
        extra.append(f"train.init_from={args.init_from}")
    if args.init_seed is not None:
        extra.append(f"train.init_seed={args.init_seed}")
    if args.reset_optimizer:
        extra.append("train.reset_optimizer=true")
    return [*overrides, *extra]


def _config_items(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The config name and the overrides of the command line, ``--seeds`` included."""
    name, overrides = config_lib.split_cli_args(args.items)
    if args.seeds is not None:
        if args.resume:
            raise ValueError("--seeds cannot change on --resume: a run keeps its seeds")
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        overrides = [*overrides, f"train.seeds={args.seeds}"]
    overrides = _init_overrides(args, overrides)
    return name, overrides


def prepare(args: argparse.Namespace) -> tuple[config_lib.Config, str, bool]:
    """Everything the command line checks before anything is compiled or written.

    Reads the config once (the YAML layers, or ``--resume``'s saved ``config.yaml``), joins
    ``jax.distributed`` from its ``train`` section (before anything starts JAX's backends), then validates
    it against the devices of every process. Returns the config, the run directory and whether the run
    resumes; raises ``ValueError`` saying what is wrong.
    """
    name, overrides = _config_items(args)
    if args.resume:
        if name is not None or args.run_dir:
            raise ValueError("--resume takes its config from the run directory; pass only key=value overrides")
        run = run_dir_lib.require_run(args.resume, "--resume")
        cfg = config_lib.read_saved_config(run.config, overrides)
    else:
        cfg = config_lib.read_config(name, overrides)
    import jax

    from jax_mat.training import distributed

    distributed.initialize(distributed.process_group(cfg.train))
    if jax.process_count() > 1 and not (args.run_dir or args.resume):
        raise ValueError(
            f"a run over {jax.process_count()} processes needs --run-dir (or --resume) naming one directory "
            f"that every process can read and write"
        )
    config_lib.validate(cfg, jax.devices())
    if args.resume:
        return cfg, run.path, True
    if cfg.train.init_from:
        from jax_mat.training import finetune

        cfg = finetune.record_source(cfg)
    run_dir = run_dir_lib.require_new(args.run_dir).path if args.run_dir else run_dir_lib.default_path(cfg.run_name)
    return cfg, run_dir, False


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


def _sweep_problem(per_seed: list[dict[str, float]], update: int, steps_per_update: int) -> str | None:
    """The first seed's non-finite problem, naming the seed in a sweep."""
    for seed, metrics in enumerate(per_seed):
        problem = _nonfinite_problem(metrics, update, steps_per_update)
        if problem:
            return problem if len(per_seed) == 1 else f"seed {seed}: {problem}"
    return None


def _as_saved(cfg: config_lib.Config) -> config_lib.Config:
    """``cfg`` as a run's ``config.yaml`` keeps it: a process id belongs to one process of one launch, and a resumed
    run gets its own again."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, process_id=-1))


def run(cfg: config_lib.Config, run_dir: str, resume: bool, progress: bool = True) -> dict:
    """Train (or continue) the run in ``run_dir``; returns the evaluation results.

    With ``train.seeds = S > 1`` the ``S`` seeds (``seed + k``) train as one
    ``jax.vmap``-ped program whose state (and checkpoint) holds every seed.
    A new run with ``train.init_from`` starts from that checkpoint's
    parameters (``training.finetune``) and saves its initial state as checkpoint 0.
    """
    import jax

    from jax_mat.training import distributed, sweep

    mesh = distributed.mesh_from_config(cfg.train)  # checked by prepare()

    from jax_mat.envs.host_bridge import reporting_host_errors
    from jax_mat.envs.registry import has_wins
    from jax_mat.training import finetune
    from jax_mat.training.checkpoint import Checkpointer
    from jax_mat.training.evaluation import (ABSOLUTE_FACTOR, Evaluations, final_evaluation, marl_eval_record,
                                             read_evaluations)
    from jax_mat.training.logging import NullLogger, RunLogger, write_json_atomic
    from jax_mat.training.runner import make_trainer
    from jax_mat.versions import package_versions

    primary = distributed.is_primary()
    training = distributed.shard_training(make_trainer(cfg), mesh)
    env = training.trainer.env
    n_seeds = cfg.train.seeds
    try:
        # Few-shot: read and check the source checkpoint before anything is compiled or written.
        init_weights = finetune.load(training.trainer) if cfg.train.init_from and not resume else None
    except BaseException:
        env.close()
        raise
    distributed.barrier("jax_mat: every process checked its inputs")  # before process 0 writes anything
    run = run_dir_lib.RunDir(run_dir)
    checkpointer = Checkpointer(run.checkpoints)
    if resume:
        # The newest checkpoint that restores; newer damaged ones are moved aside (kept), so that the run can
        # save those updates again.
        found = checkpointer.restore_latest(training.abstract_state)
        moved = {err.step: checkpointer.set_aside(err.step) for err in found.damaged}
        if primary:
            checkpointer.warn_skipped(found, moved)
            for change in config_lib.update_saved_config(_as_saved(cfg), run.config):
                print(f"note: resumed with {change} (config.yaml updated)", file=sys.stderr)
        state = found.value
    else:
        if primary:
            os.makedirs(run_dir, exist_ok=True)
            config_lib.save_config(_as_saved(cfg), run.config, package_versions())
        with reporting_host_errors(env):
            state = training.init(sweep.run_keys(cfg.seed, n_seeds))
        if init_weights is not None:
            # The source's arrays, placed as the sharded programs expect their state.
            state = jax.tree.map(lambda x, like: jax.device_put(x, like.sharding),
                                 finetune.apply(state, init_weights), training.abstract_state)
            checkpointer.save(0, state)  # --resume restarts from here, never from the source

    steps_per_update = cfg.train.n_envs * cfg.train.episode_length
    total_updates = cfg.num_updates
    done_updates = training.updates_done(state)
    if primary:
        logger = RunLogger(run_dir, total_updates * steps_per_update, done_updates * steps_per_update, progress,
                           n_seeds=n_seeds, show_win_rate=has_wins(cfg.env))
    else:
        logger = NullLogger()
    per_seed = lambda tree: sweep.split_seeds(tree, n_seeds)
    evaluations = None
    try:
        evaluations = Evaluations(training, run_dir, has_wins(cfg.env), primary, done_updates)
        tick = time.perf_counter()
        while done_updates < total_updates:
            with reporting_host_errors(env):
                state, metrics = training.update(state)
                metrics = per_seed(metrics)
            for seed_metrics in metrics:
                seed_metrics.update(env.host_metrics())
            done_updates += 1
            problem = _sweep_problem(metrics, done_updates, steps_per_update)
            if problem:
                last = checkpointer.latest_step()
                raise TrainingError(
                    f"{problem}; stopped. "
                    f"Last good checkpoint: {'none' if last is None else f'update {last}'} in {checkpointer.directory}"
                )
            now = time.perf_counter()
            sps = n_seeds * steps_per_update / max(now - tick, 1e-9)
            tick = now
            env_steps = done_updates * steps_per_update
            if done_updates % cfg.train.log_every == 0 or done_updates == total_updates:
                logger.log(env_steps, metrics, sps)
            logger.advance(steps_per_update)
            if evaluations.due(done_updates):
                with reporting_host_errors(env):
                    evaluations.periodic(state.params, done_updates, logger)
            if done_updates % cfg.train.checkpoint_every == 0 or done_updates == total_updates:
                checkpointer.save(done_updates, state)
        with reporting_host_errors(env):
            results = final_evaluation(training, state.params)
            absolute, absolute_episodes = evaluations.absolute(state.params)
        logger.log_eval(total_updates * steps_per_update, results)
        summary = sweep.summarize(results, {"env_steps": total_updates * steps_per_update, "updates": total_updates,
                                            "seeds": n_seeds, "deterministic": True, "devices": mesh.size,
                                            "mesh": dict(mesh.shape), "processes": jax.process_count()})
        summary["absolute"] = sweep.summarize(absolute, {
            "episodes_per_seed": ABSOLUTE_FACTOR * cfg.train.eval_episodes, "deterministic": cfg.train.eval_greedy,
            "of": "each seed's best periodic evaluation (its final parameters if none)"})
        summary["versions"] = package_versions()
        if primary:
            write_json_atomic(run.eval, summary)
            record = marl_eval_record(cfg.env.name, cfg.env.variant, cfg.run_algo_name,
                                      read_evaluations(run_dir), absolute_episodes, has_wins(cfg.env))
            write_json_atomic(run.marl_eval, record)
        return summary
    finally:
        if evaluations is not None:
            evaluations.close()
        logger.close()
        checkpointer.close()
        env.close()  # a host bridge's worker processes (nothing for the other environments)


def _inform(args: argparse.Namespace) -> int:
    """``--version`` and ``--list``: print what the installed package is and knows; nothing is compiled."""
    if args.items or args.resume or args.run_dir or args.init_from:
        print("error: --list and --version take no config, overrides or run directory", file=sys.stderr)
        return 2
    if args.version:
        from jax_mat.versions import version_lines

        print(version_lines())
    if args.list:
        from jax_mat.catalog import listing

        print(listing())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list or args.version:
        return _inform(args)
    try:
        cfg, run_dir, resume = prepare(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        results = run(cfg, run_dir, resume, progress=not args.no_progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (TrainingError, HostEnvFailure) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - start) / 60
    from jax_mat.training import distributed

    if not distributed.is_primary():
        return 0
    from jax_mat.envs.registry import has_wins

    seeds = results["seeds"]
    over = f"{int(results['episodes'])} greedy episodes" + (f", mean over {seeds} seeds" if seeds > 1 else "")
    win_rate = f"win rate {results['win_rate']:.2f}, " if has_wins(cfg.env) else ""
    print(
        f"\n{cfg.algo.name} on {cfg.env.name}:{cfg.env.variant} — {results['env_steps']:,} env steps"
        f"{f' x {seeds} seeds' if seeds > 1 else ''} in {minutes:.1f} min\n"
        f"evaluation ({over}): {win_rate}mean return {results['mean_return']:.2f}\n"
        f"run directory: {run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
