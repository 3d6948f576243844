"""Animations of one greedy episode: ``python -m jax_mat.evaluate RUN_DIR --render out.gif``.

SMAX (``smax`` and ``smax_multi``, one map at a time): one frame per
environment step, drawn with matplotlib on its Agg canvas (no display needed)
and written as a GIF with Pillow (a matplotlib dependency). Allies are blue,
enemies red, each unit's shade fades with its health, a line joins a unit to
the enemy it was ordered to attack that step, and the title gives the step,
the return so far and the outcome.

JaxMARL 0.2.0 ships ``jaxmarl.viz.visualizer.SMAXVisualizer``, which also runs
headless with Agg, but it replays every step's 8 world sub-steps eagerly
(outside ``jit``) and draws each from eager JAX calls, far too slowly on a CPU
(docs/benchmarks.md, "Figures kept out of the code"). Here the episode runs
under ``jit`` and frames are drawn from the recorded states with numpy.

MuJoCo (``mujoco``): the episode runs under ``jit`` on MJX and records the
generalised positions; each frame is drawn by MuJoCo's own offscreen renderer
(``mujoco.Renderer``) from the model's ``track`` camera, which follows the
robot. That needs a headless OpenGL context, chosen by ``MUJOCO_GL`` when
``mujoco`` is first imported: ``python -m jax_mat.evaluate --render`` sets
``MUJOCO_GL=egl`` unless it is already set (``osmesa`` also works where
libOSMesa is installed). Where no context can be made, ``check_renderable``
raises one ``ValueError`` saying what is missing, before anything is
compiled. Each frame lasts one environment step of simulated time
(HalfCheetah: 50 ms), so the GIF plays in real time.

``max_steps`` caps the episode shown (a MuJoCo episode lasts 1000 steps).
Other environments (the host bridges) have no renderer.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, Callable

import jax
import numpy as np

from jax_mat.envs.wrappers import AgentFeatures, AgentFeaturesState

FRAME_MS = 120  # display time of one SMAX step in the GIF
MUJOCO_FRAME_SIZE = (240, 320)  # height, width in pixels
_ALLY, _ENEMY = np.array([0.12, 0.35, 0.85]), np.array([0.85, 0.18, 0.15])


@dataclasses.dataclass(frozen=True)
class SmaxFrame:
    """What one SMAX frame shows (numpy, every unit: allies first, then enemies)."""

    step: int
    positions: np.ndarray  # [U, 2] map coordinates
    alive: np.ndarray  # [U] bool
    health: np.ndarray  # [U] fraction of the unit type's maximum
    types: np.ndarray  # [U] int unit type
    targets: np.ndarray  # [U] int unit each one was ordered to attack this step, -1 for none
    episode_return: float
    outcome: str  # "" while running, else "won", "lost" or "time-out"


def check_output_path(path: str) -> None:
    """Raises ``ValueError`` unless ``path`` is a ``.gif`` in an existing folder."""
    if not path.lower().endswith(".gif"):
        raise ValueError(f"--render writes a GIF: the file name must end in .gif, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--render: folder {folder} does not exist")


def check_renderable(cfg: Any, map_name: str | None = None, max_steps: int | None = None) -> None:
    """Raises ``ValueError`` unless a run of ``cfg`` can be rendered here (cheap: nothing is compiled)."""
    name = cfg.env.name
    if name not in _RENDERERS:
        raise ValueError(f"env.name={name} has no renderer; renderable: {', '.join(_RENDERERS)}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"--render-steps must be >= 1, got {max_steps}")
    if map_name is not None and name != "smax_multi":
        raise ValueError(f"--map applies to smax_multi runs (which train several maps), not env.name={name}")
    if map_name is not None and map_name not in cfg.env.maps:
        raise ValueError(f"--map {map_name}: this run trained on {', '.join(cfg.env.maps)}")
    if name == "mujoco":
        check_mujoco_rendering()


def renderer(cfg: Any, env: Any, map_name: str | None = None, max_steps: int | None = None) -> Callable:
    """``render(policy, params, key, path) -> summary`` for a run's environment; ``ValueError`` if it has none."""
    check_renderable(cfg, map_name, max_steps)
    return _RENDERERS[cfg.env.name](env, map_name, max_steps)


def _smax_renderer(env: Any, map_name: str | None, max_steps: int | None) -> Callable:
    """Single-map SMAX: the auto-resetting env's raw ``SmaxEnv``."""
    raw = env.unwrapped
    smax = raw.unwrapped if isinstance(raw, AgentFeatures) else raw
    return lambda policy, params, key, path: _render_smax(raw, smax, policy, params, key, path, max_steps)


def _smax_multi_renderer(env: Any, map_name: str | None, max_steps: int | None) -> Callable:
    """Multi-map SMAX: one map (default the first) padded to the run's sizes."""
    one_map = env.only(map_name if map_name is not None else env.maps[0])
    raw, padded = one_map.raw_envs[0], one_map.map_envs[0]
    return lambda policy, params, key, path: _render_smax(raw, padded.smax, policy, params, key, path, max_steps)


def _mujoco_renderer(env: Any, map_name: str | None, max_steps: int | None) -> Callable:
    """MuJoCo on MJX: the auto-resetting env's raw ``MujocoMultiEnv``."""
    raw = env.unwrapped
    return lambda policy, params, key, path: _render_mujoco(raw, policy, params, key, path, max_steps)


_RENDERERS = {"smax": _smax_renderer, "smax_multi": _smax_multi_renderer, "mujoco": _mujoco_renderer}


def play_greedy_episode(raw_env: Any, policy: Any, params: Any, key: jax.Array, max_steps: int | None,
                        snapshot: Callable[[Any, int, float, str], Any]) -> list[Any]:
    """One greedy episode of the raw (non auto-resetting) ``raw_env``, reset first, as
    ``[snapshot(env_state, step, return so far, outcome)]`` for steps ``0..T``.

    Each step is one jitted call (policy and environment); ``outcome`` is ""
    while the episode runs, then "won", "lost" or "time-out" (SMAX's terms;
    an episode that only ends by its time limit ends in "time-out").
    ``max_steps`` stops the episode early (outcome "").
    """

    @jax.jit
    def step(params, env_state, timestep, key):
        act_key, env_key = jax.random.split(key)
        actions, _, _ = policy.act(params, timestep.obs[None], timestep.avail[None], act_key, True,
                                   world_state=timestep.world_state[None])
        return raw_env.step(env_key, env_state, actions[0])

    reset_key, key = jax.random.split(key)
    env_state, timestep = jax.jit(raw_env.reset)(reset_key)
    frames = [snapshot(env_state, 0, 0.0, "")]
    episode_return = 0.0
    limit = raw_env.spec.max_episode_steps if max_steps is None else min(max_steps, raw_env.spec.max_episode_steps)
    for t in range(1, limit + 1):
        key, step_key = jax.random.split(key)
        env_state, timestep = step(params, env_state, timestep, step_key)
        episode_return += float(timestep.reward[0])
        outcome = ""
        if bool(timestep.done):
            outcome = "won" if bool(timestep.won) else ("time-out" if bool(timestep.truncated) else "lost")
        frames.append(snapshot(env_state, t, episode_return, outcome))
        if outcome:
            break
    return frames


def record_smax_episode(raw_env: Any, smax: Any, policy: Any, params: Any, key: jax.Array,
                        max_steps: int | None = None) -> list[SmaxFrame]:
    """One greedy episode of ``raw_env`` (a raw SMAX env whose state is ``smax``'s), as frames (reset first).

    ``policy`` acts on ``raw_env``'s timesteps (padded ones for ``smax_multi``).
    """
    snapshot = lambda env_state, t, ret, outcome: _smax_frame(smax, env_state, t, ret, outcome)
    return play_greedy_episode(raw_env, policy, params, key, max_steps, snapshot)


def _smax_frame(smax: Any, env_state: Any, step: int, episode_return: float, outcome: str) -> SmaxFrame:
    if isinstance(env_state, AgentFeaturesState):
        env_state = env_state.env_state
    inner = jax.device_get(env_state.state)
    jaxmarl = smax.jaxmarl_env
    types = np.asarray(inner.unit_types, np.int32)
    attacks = np.asarray(inner.prev_attack_actions, np.int32)
    n_allies, n_move = smax.n_allies, jaxmarl.num_movement_actions
    units = np.arange(len(types))
    # SMAX numbers an ally's attacks by enemy (n_allies + j) and an enemy's in reverse ally order.
    target = np.where(units < n_allies, attacks - n_move + n_allies, n_allies - 1 - (attacks - n_move))
    return SmaxFrame(
        step=step,
        positions=np.asarray(inner.unit_positions, np.float32),
        alive=np.asarray(inner.unit_alive, bool),
        health=np.asarray(inner.unit_health) / np.asarray(jaxmarl.unit_type_health)[types],
        types=types,
        targets=np.where(attacks >= n_move, target, -1),
        episode_return=episode_return,
        outcome=outcome,
    )


def draw_smax_frames(frames: list[SmaxFrame], smax: Any, title: str) -> list[Any]:
    """PIL images of ``frames`` (matplotlib's Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle
    from PIL import Image

    jaxmarl = smax.jaxmarl_env
    radii = np.asarray(jaxmarl.unit_type_radiuses)
    shorthands = jaxmarl.unit_type_shorthands
    n_allies = smax.n_allies
    fig = Figure(figsize=(5, 5), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
    images = []
    for frame in frames:
        ax.clear()
        ax.set_xlim(0, jaxmarl.map_width)
        ax.set_ylim(0, jaxmarl.map_height)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for unit in np.flatnonzero(frame.alive):
            target = frame.targets[unit]
            if target >= 0 and frame.alive[target]:
                colour = _ALLY if unit < n_allies else _ENEMY
                ax.plot(*zip(frame.positions[unit], frame.positions[target]), color=colour, lw=0.8, alpha=0.6)
        for unit in np.flatnonzero(frame.alive):
            base = _ALLY if unit < n_allies else _ENEMY
            shade = 1.0 - (1.0 - base) * max(float(frame.health[unit]), 0.2)  # fades towards white
            ax.add_patch(Circle(frame.positions[unit], 1.5 * radii[frame.types[unit]], fc=shade, ec=base))
            ax.text(*frame.positions[unit], shorthands[frame.types[unit]], ha="center", va="center", fontsize=7)
        status = f" — {frame.outcome}" if frame.outcome else ""
        ax.set_title(f"{title}  step {frame.step}  return {frame.episode_return:.2f}{status}", fontsize=9)
        canvas.draw()
        images.append(Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB"))
    return images


def write_gif(images: list[Any], path: str, frame_ms: int = FRAME_MS) -> None:
    """Writes ``images`` as a looping GIF, atomically (a temporary file beside ``path``, then a rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        # The last frame (the outcome) stays up longer.
        durations = [frame_ms] * (len(images) - 1) + [frame_ms * 10]
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _render_smax(raw_env: Any, smax: Any, policy: Any, params: Any, key: jax.Array, path: str,
                 max_steps: int | None) -> dict:
    frames = record_smax_episode(raw_env, smax, policy, params, key, max_steps)
    write_gif(draw_smax_frames(frames, smax, smax.map_name), path)
    last = frames[-1]
    return {"map": smax.map_name, "frames": len(frames), "steps": last.step, "outcome": last.outcome,
            "episode_return": last.episode_return}


@dataclasses.dataclass(frozen=True)
class MujocoFrame:
    """What one MuJoCo frame shows."""

    step: int
    qpos: np.ndarray  # [nq] generalised positions
    episode_return: float
    outcome: str  # "" while running, else "time-out" (the time limit) or "fell" (Ant, Walker2d: unhealthy)


def check_mujoco_rendering() -> None:
    """Raises ``ValueError`` saying what is missing unless MuJoCo can make a headless OpenGL context here."""
    import mujoco

    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
    try:
        mujoco.Renderer(model, 8, 8).close()
    except Exception as err:  # the GL backends raise ImportError, RuntimeError, FatalError, AttributeError...
        chosen = os.environ.get("MUJOCO_GL") or "unset (GLFW, which needs a display)"
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(
            f"cannot render MuJoCo here: no OpenGL context with MUJOCO_GL={chosen} ({detail}). Headless rendering "
            "needs EGL (libEGL from a GPU driver or Mesa; MUJOCO_GL=egl) or OSMesa (libOSMesa; MUJOCO_GL=osmesa), "
            "set before Python imports mujoco"
        ) from None


def draw_mujoco_frames(frames: list[MujocoFrame], mj_model: Any, title: str) -> list[Any]:
    """PIL images of ``frames``, drawn by ``mujoco.Renderer`` from the model's ``track`` camera."""
    import mujoco
    from PIL import Image, ImageDraw

    height, width = MUJOCO_FRAME_SIZE
    data = mujoco.MjData(mj_model)
    images = []
    with mujoco.Renderer(mj_model, height, width) as renderer:
        for frame in frames:
            data.qpos[:] = frame.qpos
            mujoco.mj_forward(mj_model, data)  # positions -> body poses (and the camera's target)
            renderer.update_scene(data, camera="track")
            image = Image.fromarray(renderer.render())
            status = f" — {frame.outcome}" if frame.outcome else ""
            ImageDraw.Draw(image).text((4, 4), f"{title}  step {frame.step}  return {frame.episode_return:.1f}{status}",
                                       fill=(255, 255, 255))
            images.append(image)
    return images


def _render_mujoco(raw_env: Any, policy: Any, params: Any, key: jax.Array, path: str, max_steps: int | None) -> dict:
    # MuJoCo episodes cannot be won: the task ends one early only when the robot is unhealthy.
    snapshot = lambda env_state, t, ret, outcome: MujocoFrame(
        t, np.asarray(env_state.qpos), ret, "fell" if outcome == "lost" else outcome)
    frames = play_greedy_episode(raw_env, policy, params, key, max_steps, snapshot)
    disabled = f" (disabled: {', '.join(raw_env.disabled_joints)})" if raw_env.disabled_joints else ""
    write_gif(draw_mujoco_frames(frames, raw_env.mj_model, raw_env.task.name), path,
              frame_ms=max(int(round(raw_env.dt * 1000)), 20))
    last = frames[-1]
    return {"map": raw_env.task.name + disabled, "frames": len(frames), "steps": last.step, "outcome": last.outcome,
            "episode_return": last.episode_return}
