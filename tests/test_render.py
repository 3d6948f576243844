"""``python -m jax_mat.evaluate RUN_DIR --render out.gif``: one greedy episode as an animation."""

import os
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from jax_mat import evaluate, render
from tests.run_dirs import untrained_run

TINY_MAT = ["algo.n_embd=16", "train.n_envs=2", "train.episode_length=8", "train.total_steps=16"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smax_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("render") / "smax_3m"
    untrained_run(run_dir, TINY_MAT)
    return run_dir


def test_renders_a_smax_episode_to_a_gif(smax_run, tmp_path, capfd):
    out = tmp_path / "episode.gif"
    assert evaluate.main([str(smax_run), "--render", str(out), "--render-steps", "6"]) == 0
    assert "wrote" in capfd.readouterr().out
    with Image.open(out) as gif:
        assert gif.n_frames == 7  # the reset, then 6 steps
        first = gif.convert("RGB").tobytes()
        gif.seek(6)
        assert gif.convert("RGB").tobytes() != first  # the title's step counter moves at least
    assert [p.name for p in tmp_path.iterdir()] == ["episode.gif"]  # no temporary file left behind


def test_smax_frames_follow_the_units(smax_run):
    """The recorded frames hold every unit of 3m (3 allies, 3 enemies) and start from step 0 with no return."""
    from jax_mat.evaluate import load_run

    run = load_run(str(smax_run))
    raw = run.trainer.env.unwrapped  # the agent features over SMAX (the policy's observations)
    import jax

    frames = render.record_smax_episode(raw, raw.unwrapped, run.trainer.policy, run.state.params,
                                        jax.random.PRNGKey(1), max_steps=3)
    assert [f.step for f in frames] == [0, 1, 2, 3]
    assert frames[0].positions.shape == (6, 2) and frames[0].alive.all() and frames[0].episode_return == 0.0
    assert (frames[0].health <= 1.0).all() and (frames[0].targets == -1).all()


@pytest.mark.parametrize("argv, message", [
    (["--render", "{tmp}/out.png"], "must end in .gif"),
    (["--render", "{tmp}/missing/out.gif"], "does not exist"),
    (["--render", "{tmp}/out.gif", "--render-steps", "0"], "--render-steps must be >= 1"),
    (["--render", "{tmp}/out.gif", "--map", "3m"], "--map applies to smax_multi runs"),
    (["--render-steps", "5"], "apply with --render"),
])
def test_bad_render_requests_fail_before_loading(smax_run, tmp_path, capfd, monkeypatch, argv, message):
    def loaded(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded for a bad request")

    monkeypatch.setattr(evaluate, "load_run", loaded)
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert evaluate.main([str(smax_run), *argv]) == 2
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert list(tmp_path.iterdir()) == []


def test_environments_without_a_renderer_say_which_have_one(tmp_path, capfd):
    run_dir = tmp_path / "smac"
    untrained_run(run_dir, ["env=smac", "env.host_env=jax_mat.standins.smax_smac:StarCraft2Env", *TINY_MAT],
                  with_checkpoint=False)
    assert evaluate.main([str(run_dir), "--render", str(tmp_path / "out.gif")]) == 2
    assert "env.name=smac has no renderer; renderable: smax, smax_multi, mujoco" in capfd.readouterr().err


def test_missing_opengl_is_one_clear_error_before_compiling(tmp_path, capfd, monkeypatch):
    import mujoco

    def no_context(*args, **kwargs):
        raise RuntimeError("an OpenGL platform library has not been loaded into this process")

    monkeypatch.setattr(mujoco, "Renderer", no_context)
    run_dir = tmp_path / "cheetah"
    untrained_run(run_dir, ["env=mujoco", "algo.num_mini_batch=1", *TINY_MAT], with_checkpoint=False)
    assert evaluate.main([str(run_dir), "--render", str(tmp_path / "out.gif")]) == 2
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "cannot render MuJoCo here: no OpenGL context with MUJOCO_GL=" in errors[0]
    assert "MUJOCO_GL=egl" in errors[0] and "MUJOCO_GL=osmesa" in errors[0] and "not been loaded" in errors[0]
    assert not (tmp_path / "out.gif").exists()


_DRAW_CHEETAH = textwrap.dedent("""
    import sys
    import numpy as np
    from jax_mat import render
    from jax_mat.envs import mujoco_tasks
    from jax_mat.envs.mujoco import load_model
    try:
        render.check_mujoco_rendering()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    model = load_model(mujoco_tasks._task("halfcheetah_6x1"))
    qpos = [np.asarray(model.qpos0) + np.eye(model.nq)[3] * angle for angle in (0.0, 0.5, 1.0)]
    frames = [render.MujocoFrame(t, q, float(t), "") for t, q in enumerate(qpos)]
    render.write_gif(render.draw_mujoco_frames(frames, model, "halfcheetah_6x1"), sys.argv[1], frame_ms=50)
""")


def test_mujoco_frames_render_headless_or_say_what_is_missing(tmp_path):
    """MuJoCo's offscreen renderer under MUJOCO_GL=egl (what ``--render`` sets), in a fresh process: either it
    draws the cheetah (its back thigh bent further in each frame), or it names what is missing."""
    out = tmp_path / "cheetah.gif"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    done = subprocess.run([sys.executable, "-c", _DRAW_CHEETAH, str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode == 2:
        assert "error: cannot render MuJoCo here" in done.stderr and "MUJOCO_GL=egl" in done.stderr
        assert not out.exists()
        return
    assert done.returncode == 0, done.stderr
    with Image.open(out) as gif:
        assert gif.n_frames == 3 and gif.size == (render.MUJOCO_FRAME_SIZE[1], render.MUJOCO_FRAME_SIZE[0])
        pictures = []
        for i in range(3):
            gif.seek(i)
            pictures.append(gif.convert("RGB").tobytes())
    assert len(set(pictures)) == 3


@pytest.mark.slow
def test_cli_renders_a_mujoco_episode(tmp_path):
    """Slow (compiles MJX and MAT): the whole ``--render`` path on an untrained HalfCheetah run."""
    run_dir = tmp_path / "cheetah"
    untrained_run(run_dir, ["env=mujoco", "env.disabled_joints=[bthigh]", "algo.num_mini_batch=1", *TINY_MAT])
    out = tmp_path / "cheetah.gif"
    done = subprocess.run([sys.executable, "-m", "jax_mat.evaluate", str(run_dir), "--render", str(out),
                           "--render-steps", "10"], cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode == 2:
        assert "error: cannot render MuJoCo here" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert "halfcheetah_6x1 (disabled: bthigh)" in done.stdout and "10 steps (11 frames)" in done.stdout
    with Image.open(out) as gif:
        assert gif.n_frames == 11
