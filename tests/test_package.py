"""jax_mat as an installed package: a quiet start, ``--list`` and ``--version``, and a wheel in a fresh venv."""

import contextlib
import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import pytest

from jax_mat import catalog, train
from jax_mat.envs.quiet_import import quiet_import
from jax_mat.versions import __version__, package_versions

REPO = pathlib.Path(__file__).resolve().parents[1]
# What third-party packages print when imported: JaxMARL's submodule notes, MJX's missing GPU backend.
CHATTER = ("submoduled environments", "Failed to import warp", "Failed to import mujoco_warp")
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


@contextlib.contextmanager
def counting_compiles():
    """Yields a list that collects the JAX trace/lower/compile events of the block."""
    events = []

    def listener(event, duration_secs, **kwargs):
        if event in COMPILE_EVENTS:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_list_names_every_algorithm_environment_map_task_and_experiment_without_compiling():
    from jax_mat import config as config_lib
    from jax_mat.envs import mujoco_tasks, registry, smax
    from jax_mat.algos.registry import known_algos

    with counting_compiles() as compiles:
        sections = dict(catalog.sections())
        text = catalog.listing()
    assert compiles == []
    names = {heading.split(" (")[0]: [name for name, _ in entries] for heading, entries in sections.items()}
    assert set(known_algos()) <= set(names["algorithms"]) and "marwkv_v6" in names["algorithms"]
    assert names["environments"] == list(registry.known_envs())
    assert names["SMAX maps"] == list(smax.known_smax_maps())
    assert names["MuJoCo tasks"] == list(mujoco_tasks.known_tasks())
    assert names["experiments"] == list(config_lib.known_experiments())
    assert "smax_multi" in names["environment configs"]
    for entries in sections.values():
        for name, description in entries:
            assert description and description != catalog.NO_DESCRIPTION and "\n" not in description, name
    assert any(line.split() == ["3s5z_vs_3s6z", "8", "allies", "vs", "9", "enemies"] for line in text.splitlines())
    assert len(text.splitlines()) == len(sections) + sum(len(e) for e in sections.values())


def test_cli_starts_quietly_and_prints_versions_and_the_list():
    # One interpreter imports every simulator package (JaxMARL through --list, MJX through the MuJoCo env).
    code = "import jax_mat.envs.mujoco, sys; from jax_mat.train import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "--version", "--list"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for line in CHATTER:
        assert line.lower() not in (proc.stdout + proc.stderr).lower(), line
    lines = proc.stdout.splitlines()
    assert lines[0] == f"jax_mat {__version__}"
    assert f"  jaxmarl {package_versions()['jaxmarl']}" in lines
    assert "algorithms (algo=NAME):" in lines
    assert any(line.split() == ["smax_3m", *"The 1M-step learning check: MAT on SMAX 3m.".split()] for line in lines)


def test_list_takes_no_config(capfd):
    assert train.main(["--list", "smax_3m"]) == 2
    assert capfd.readouterr().err.startswith("error: --list and --version take no config")


def test_quiet_import_passes_a_failed_imports_output_to_stderr(capfd):
    with pytest.raises(ModuleNotFoundError):
        with quiet_import():
            print("a note from print")
            os.write(1, b"a note on descriptor 1\n")
            import jax_mat_no_such_module  # noqa: F401
    out, err = capfd.readouterr()
    assert out == ""
    assert "a note from print" in err and "a note on descriptor 1" in err
    with quiet_import():
        print("dropped")
    print("kept")
    assert capfd.readouterr() == ("kept\n", "")


# --------------------------------------------------------------------------- a wheel in a fresh venv

# Left out of the copy the wheel is built from: version control, build outputs, runs.
_NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "runs", "*.egg-info", "__pycache__", ".pytest_cache")


def _wheel_build_command(source: pathlib.Path, out: pathlib.Path) -> list[str]:
    """``pip wheel`` of ``source``: with this interpreter's setuptools when it can build a wheel offline
    (setuptools >= 70.1 has bdist_wheel; older ones need the wheel package), else in pip's isolated build
    environment, which fetches pyproject.toml's build requirements from the package index."""
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(out), "-q"]
    setuptools = tuple(int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    if setuptools >= (70, 1) or (setuptools >= (68, 0) and importlib.util.find_spec("wheel")):
        command.append("--no-build-isolation")
    return command


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_wheel_in_a_fresh_venv_trains_and_evaluates_from_any_directory(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    dist = tmp_path / "dist"
    subprocess.run(_wheel_build_command(source, dist), check=True, timeout=600)
    (wheel,) = dist.glob("jax_mat-*.whl")

    # The venv sees this machine's packages (jax, jaxmarl, ...) but gets jax_mat from the wheel alone; pip
    # may not reach an index, so every dependency the wheel declares must already be installed.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", str(wheel)], check=True, timeout=600)

    elsewhere = tmp_path / "elsewhere"  # a working directory with neither the source nor configs/
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})

    def run(*args: str) -> str:
        proc = subprocess.run([python, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    installed = pathlib.Path(run("-c", "import jax_mat; print(jax_mat.__file__)").strip())
    assert installed.is_relative_to(venv), installed
    assert run("-m", "jax_mat.train", "--version").splitlines()[0] == f"jax_mat {__version__}"
    # A named experiment and a selector read the shipped YAML files (includes among them) from the venv.
    out = run("-m", "jax_mat.train", "smax_3m", "algo=mat_dec", "train.n_envs=4", "train.episode_length=8",
              "algo.ppo_epochs=2", "algo.num_mini_batch=2", "train.eval_episodes=2", "train.eval_every=1",
              "train.checkpoint_every=1", "algo.n_embd=16", "train.total_steps=64", "--run-dir", "run",
              "--no-progress")
    assert "mat_dec on smax:3m" in out
    assert (elsewhere / "run" / "eval.json").is_file()
    out = run("-m", "jax_mat.evaluate", "run", "--episodes", "2")
    assert "checkpoint update 2: 2 greedy episodes" in out
