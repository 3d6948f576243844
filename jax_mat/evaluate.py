"""Evaluate a run's checkpoint greedily: ``python -m jax_mat.evaluate RUN_DIR [--episodes 32]``.

Loads ``RUN_DIR/config.yaml`` and the last complete checkpoint that can be read
(a newer damaged one is named in a warning), or the ``--step`` checkpoint, plays
``--episodes`` episodes with deterministic actions (sampled ones with
``--stochastic``), prints the win rate and mean return, and with ``--out FILE``
also writes them as JSON.

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
from typing import Sequence

from jax_mat import config as config_lib
from jax_mat.host.pool import HostEnvFailure
from jax_mat.train import CHECKPOINT_DIR, CONFIG_FILE


def load_run(run_dir: str, step: int | None = None):
    """``(config, trainer, state, update)`` of a run's checkpoint; raises ``ValueError`` on a bad run directory."""
    cfg = _run_config(run_dir)

    from jax_mat.envs.registry import make_env_from_config
    from jax_mat.networks.registry import make_policy
    from jax_mat.training import sweep
    from jax_mat.training.checkpoint import Checkpointer
    from jax_mat.training.runner import Trainer

    env = make_env_from_config(cfg.env)
    trainer = Trainer(cfg, env, make_policy(env.spec, cfg.algo))
    checkpointer = Checkpointer(os.path.join(run_dir, CHECKPOINT_DIR))
    try:
        if step is None:  # the newest that restores; a newer damaged one is named in a warning and left alone
            found = checkpointer.restore_latest(sweep.state_template(trainer))
            checkpointer.warn_skipped(found)
            state, used_step = found.value, found.step
        else:
            state, used_step = checkpointer.restore(sweep.state_template(trainer), step), step
    finally:
        checkpointer.close()
    return cfg, trainer, state, int(used_step)


def evaluate_run(run_dir: str, episodes: int, step: int | None = None, seed: int = 0,
                 per_map: bool = False, deterministic: bool = True) -> dict:
    """Greedy (or, with ``deterministic=False``, sampled) evaluation of a run's checkpoint; raises
    ``ValueError`` on a bad run directory or option."""
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    cfg = _run_config(run_dir)
    if per_map and cfg.env.name != "smax_multi":
        raise ValueError(f"--per-map applies to smax_multi runs (several maps), not env.name={cfg.env.name}")
    if cfg.env.name == "smax_multi" and not per_map:
        from jax_mat.envs.smax_multi import group_size

        group_size(episodes, len(cfg.env.maps), "--episodes")

    from jax_mat.envs.host_bridge import reporting_host_errors
    from jax_mat.training import sweep
    from jax_mat.training.runner import Trainer

    cfg, trainer, state, used_step = load_run(run_dir, step)
    extra = {"checkpoint_update": used_step, "seeds": cfg.train.seeds, "deterministic": deterministic}
    try:
        with reporting_host_errors(trainer.env):
            if not per_map:
                return sweep.summarize(sweep.evaluate_seeds(trainer, state.params, seed, episodes, deterministic),
                                       extra)
            maps = {}
            for name in cfg.env.maps:
                one_map = Trainer(cfg, trainer.env.only(name), trainer.policy)
                maps[name] = sweep.summarize(
                    sweep.evaluate_seeds(one_map, state.params, seed, episodes, deterministic), {})
    finally:
        if hasattr(trainer.env, "close"):
            trainer.env.close()  # a host bridge's worker processes
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
    cfg = _run_config(run_dir)
    render.check_renderable(cfg, map_name, max_steps)

    import jax

    cfg, trainer, state, used_step = load_run(run_dir, step)
    params = state.params if cfg.train.seeds == 1 else jax.tree.map(lambda x: x[0], state.params)
    draw = render.renderer(cfg, trainer.env, map_name, max_steps)
    return {**draw(trainer.policy, params, jax.random.PRNGKey(seed), out), "checkpoint_update": used_step}


def _run_config(run_dir: str) -> config_lib.Config:
    config_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ValueError(f"{run_dir} is not a jax_mat run directory (no {CONFIG_FILE})")
    return config_lib.config_from_file(config_path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jax_mat.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--step", type=int, default=None, help="checkpoint (update number); default the last")
    parser.add_argument("--seed", type=int, default=0)
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
            shown = render_run(args.run_dir, args.render, args.step, args.seed, args.map, args.render_steps)
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

    wins = has_wins(_run_config(args.run_dir).env)
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
