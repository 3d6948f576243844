"""Evaluate a run's checkpoint greedily: ``python -m jax_mat.evaluate RUN_DIR [--episodes N]``.

Loads ``RUN_DIR/config.yaml`` and the last complete checkpoint that can be read
(a newer damaged one is named in a warning), or the ``--step`` checkpoint, plays
``--episodes`` episodes (default the run's ``train.eval_episodes``) with
deterministic actions (sampled ones with ``--stochastic``), prints the win rate
and mean return, and with ``--out FILE`` also writes them as JSON. By default
the episodes are those of the run's final evaluation (``--seed``: its keys,
``training.evaluation.final_evaluation_seed``), played by the same program on
one device, so a finished run's last checkpoint reproduces its ``eval.json``.

``--per-map`` (``smax_multi`` runs): ``--episodes`` greedy episodes on each of
the run's maps (padded as in training); the top-level figures are then the
means over the maps. ``--render OUT.gif`` instead writes an animation of one
greedy episode (``jax_mat.render``: SMAX drawn with matplotlib, MuJoCo with
its headless renderer; for ``smax_multi`` on ``--map``, default the first map;
for a seed sweep, seed 0's parameters; ``--render-steps N`` shows at most N
steps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NamedTuple, Sequence

from jax_mat import config as config_lib
from jax_mat.host.pool import HostEnvFailure
from jax_mat.training.run_dir import require_run


class LoadedRun(NamedTuple):
    """A run's checkpoint, restored onto one device with the programs that evaluate it."""

    config: config_lib.Config
    training: Any  # training.distributed.ShardedTraining on a one-device mesh
    state: Any  # the RunnerState (every seed's, for a sweep)
    step: int  # the checkpoint's update

    @property
    def trainer(self):
        return self.training.trainer


def load_run(run_dir: str, step: int | None = None) -> LoadedRun:
    """A run's checkpoint (``step``, or the newest that restores); ``ValueError`` on a bad run directory.

    Built as training builds it (``runner.make_trainer``, ``distributed.shard_training``) on this process's
    first device, whatever devices the run trained on.
    """
    run = require_run(run_dir)
    cfg = config_lib.config_from_file(run.config)

    from jax_mat.training import distributed
    from jax_mat.training.checkpoint import Checkpointer
    from jax_mat.training.runner import make_trainer

    training = distributed.shard_training(make_trainer(cfg), distributed.one_device_mesh(cfg.train))
    checkpointer = Checkpointer(run.checkpoints)
    try:
        if step is None:  # the newest that restores; a newer damaged one is named in a warning and left alone
            found = checkpointer.restore_latest(training.abstract_state)
            checkpointer.warn_skipped(found)
            state, used_step = found.value, found.step
        else:
            state, used_step = checkpointer.restore(training.abstract_state, step), step
    finally:
        checkpointer.close()
    return LoadedRun(cfg, training, state, int(used_step))


def evaluate_run(run_dir: str, episodes: int | None = None, step: int | None = None, seed: int | None = None,
                 per_map: bool = False, deterministic: bool = True) -> dict:
    """Greedy (or, with ``deterministic=False``, sampled) evaluation of a run's checkpoint; raises
    ``ValueError`` on a bad run directory or option.

    ``episodes``: per seed (per map with ``per_map``), default the run's ``train.eval_episodes``; ``seed``: the
    first seed's evaluation key ``PRNGKey(seed)``, default the run's final evaluation's (so the defaults
    reproduce ``eval.json`` from the checkpoint it was computed on).
    """
    if episodes is not None and episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    cfg = config_lib.config_from_file(require_run(run_dir).config)
    episodes = cfg.train.eval_episodes if episodes is None else episodes
    if per_map and cfg.env.name != "smax_multi":
        raise ValueError(f"--per-map applies to smax_multi runs (several maps), not env.name={cfg.env.name}")
    if cfg.env.name == "smax_multi" and not per_map:
        from jax_mat.envs.smax_multi import group_size

        group_size(episodes, len(cfg.env.maps), "--episodes")

    import dataclasses

    from jax_mat.envs.host_bridge import reporting_host_errors
    from jax_mat.training import distributed, evaluation, sweep

    loaded = load_run(run_dir, step)
    env = loaded.trainer.env
    play = lambda training: sweep.summarize(
        evaluation.final_evaluation(training, loaded.state.params, episodes, deterministic, seed), {})
    extra = {"checkpoint_update": loaded.step, "seeds": cfg.train.seeds, "deterministic": deterministic}
    try:
        with reporting_host_errors(env):
            if not per_map:
                return {**play(loaded.training), **extra}
            maps = {}
            for name in cfg.env.maps:
                one_map = dataclasses.replace(loaded.trainer, env=env.only(name))
                maps[name] = play(distributed.shard_training(one_map, loaded.training.mesh))
    finally:
        env.close()  # a host bridge's worker processes (nothing for the other environments)
    means = {k: sum(r[k] for r in maps.values()) / len(maps)
             for k in ("win_rate", "mean_return", "mean_length")}
    return {**means, "episodes": sum(r["episodes"] for r in maps.values()), **extra, "per_map": maps}


def render_run(run_dir: str, out: str, step: int | None = None, seed: int = 0, map_name: str | None = None,
               max_steps: int | None = None) -> dict:
    """Writes one greedy episode of a run's checkpoint to the GIF ``out``; returns what it showed.

    Raises ``ValueError`` (before loading anything) on a bad path or option, or
    when the run's environment cannot be rendered here.
    """
    from jax_mat import render

    render.check_output_path(out)
    cfg = config_lib.config_from_file(require_run(run_dir).config)
    render.check_renderable(cfg, map_name, max_steps)

    import jax

    loaded = load_run(run_dir, step)
    params = loaded.state.params if cfg.train.seeds == 1 else jax.tree.map(lambda x: x[0], loaded.state.params)
    draw = render.renderer(cfg, loaded.trainer.env, map_name, max_steps)
    return {**draw(loaded.trainer.policy, params, jax.random.PRNGKey(seed), out), "checkpoint_update": loaded.step}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jax_mat.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes per seed (default the run's train.eval_episodes)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint (update number); default the last")
    parser.add_argument("--seed", type=int, default=None,
                        help="the evaluation's base seed (default the run's final evaluation's; --render: 0)")
    parser.add_argument("--out", help="also write the results to this JSON file")
    parser.add_argument("--per-map", action="store_true", help="smax_multi: --episodes episodes on each map")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the greedy ones")
    parser.add_argument("--render", metavar="OUT.gif", help="write an animation of one greedy episode instead")
    parser.add_argument("--map", help="with --render on a smax_multi run: the map to play (default the first)")
    parser.add_argument("--render-steps", type=int, metavar="N", help="with --render: show at most N steps")
    args = parser.parse_args(argv)
    try:
        if (args.map is not None or args.render_steps is not None) and not args.render:
            raise ValueError("--map and --render-steps apply with --render; --per-map evaluates every map")
        if args.render:
            # MuJoCo picks its OpenGL backend when first imported; EGL needs no display.
            os.environ.setdefault("MUJOCO_GL", "egl")
            seed = 0 if args.seed is None else args.seed
            shown = render_run(args.run_dir, args.render, args.step, seed, args.map, args.render_steps)
            print(f"wrote {args.render}: {shown['map']}, checkpoint update {shown['checkpoint_update']}, "
                  f"{shown['steps']} steps ({shown['frames']} frames), {shown['outcome'] or 'unfinished'}, "
                  f"return {shown['episode_return']:.2f}")
            return 0
        if args.stochastic and args.render:
            raise ValueError("--stochastic applies to evaluation; --render plays a greedy episode")
        results = evaluate_run(args.run_dir, args.episodes, args.step, args.seed, args.per_map, not args.stochastic)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except HostEnvFailure as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from jax_mat.envs.registry import has_wins

    wins = has_wins(config_lib.config_from_file(require_run(args.run_dir).config).env)
    seeds = f" (mean over {results['seeds']} seeds)" if results["seeds"] > 1 else ""
    mode = "greedy" if results["deterministic"] else "sampled"
    for name, r in results.get("per_map", {}).items():
        print(f"  {name}: {int(r['episodes'])} {mode} episodes, {_scores(r, wins)}")
    over = " (mean over maps)" if "per_map" in results else ""
    print(f"checkpoint update {results['checkpoint_update']}: {int(results['episodes'])} {mode} episodes{seeds}, "
          f"{_scores(results, wins)}{over}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def _scores(r: dict, wins: bool) -> str:
    """``win rate ..., mean return ..., mean length ...``; no win rate where episodes cannot be won (MuJoCo:
    the JSON keeps its 0.0)."""
    win_rate = f"win rate {r['win_rate']:.3f}, " if wins else ""
    return f"{win_rate}mean return {r['mean_return']:.3f}, mean length {r['mean_length']:.1f}"


if __name__ == "__main__":
    sys.exit(main())
