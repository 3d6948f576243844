"""Bi-DexHands tasks on NVIDIA Isaac Gym through the host bridge: ``env=isaac env.task=ShadowHandDoorOpenInward``.

A worker process holds one Bi-DexHands ``MultiVecTaskPython`` simulating all of
a pool's environments (``jax_mat.host.bidexhands_api``), stepped from the jitted
rollout by ``envs.host_bridge.HostBridgeEnv``. Actions are continuous; agents
with fewer action or observation dimensions than the largest are padded (their
``avail`` marks the real action dimensions).

Installing what it needs (checked when the config is built):

* NVIDIA Isaac Gym Preview 4 (from NVIDIA's developer site; ``pip install -e
  isaacgym/python``). It supports Python 3.6-3.8 only, so on a newer Python
  give its interpreter as ``env.host_python=/path/to/python3.8``: the workers
  run there (they need numpy, torch, ``isaacgym`` and ``bidexhands``, not
  JAX), the trainer here.
* Bi-DexHands: ``git clone https://github.com/PKU-MARL/DexterousHands`` and
  ``pip install -e DexterousHands`` (the package ``bidexhands``).

``env.host_env`` replaces the Bi-DexHands constructor by another with its
interface (``jax_mat.standins.dexhands_mujoco:make_numpy_vec_env`` simulates two
planar MuJoCo arms); then the Isaac Gym checks do not apply.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from jax_mat.envs.host_options import check_host_options, pool_options
from jax_mat.host.bidexhands_api import DEFAULT_ENV_FACTORY
from jax_mat.host.pool import BatchRecipe

ISAAC_INSTALL = (
    "install NVIDIA Isaac Gym Preview 4 (download it from NVIDIA's developer site, then "
    "pip install -e isaacgym/python; it supports Python 3.6-3.8, so on a newer Python set "
    "env.host_python to that interpreter)"
)
BIDEXHANDS_INSTALL = (
    "install Bi-DexHands with: git clone https://github.com/PKU-MARL/DexterousHands && "
    "pip install -e DexterousHands"
)

# Run by the workers' interpreter: which of the simulator's packages it has, and Bi-DexHands' task configs.
_PROBE = """
import importlib.util, json, os
spec = importlib.util.find_spec("bidexhands")
cfg = os.path.join(list(spec.submodule_search_locations)[0], "cfg") if spec else ""
print(json.dumps({"isaacgym": importlib.util.find_spec("isaacgym") is not None, "bidexhands": spec is not None,
                  "tasks": sorted(f[:-5] for f in os.listdir(cfg) if f.endswith(".yaml")) if cfg else []}))
"""


def _probe(python: str) -> dict[str, Any]:
    """What the workers' interpreter has installed (a short subprocess, nothing imported)."""
    try:
        out = subprocess.run([python or sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        raise ValueError(f"env=isaac: cannot ask the interpreter {python or sys.executable} what it has "
                         f"installed: {err}") from None


def check_isaac_config(env_config: Any) -> None:
    """Raises ``ValueError`` unless Isaac Gym and Bi-DexHands are installed (for the workers) and the task is known."""
    check_host_options(env_config)
    if env_config.host_env:
        if not env_config.task:
            raise ValueError("env=isaac needs env.task (the task name handed to env.host_env)")
        return
    found = _probe(env_config.host_python)
    if not found["isaacgym"]:
        runs_here = "" if env_config.host_python else f" (this interpreter is Python {sys.version.split()[0]})"
        raise ValueError(f"env=isaac needs NVIDIA Isaac Gym, which is not installed{runs_here}: {ISAAC_INSTALL}")
    if not found["bidexhands"]:
        raise ValueError(f"env=isaac needs Bi-DexHands, which is not installed: {BIDEXHANDS_INSTALL}")
    if env_config.task not in found["tasks"]:
        raise ValueError(f"unknown Bi-DexHands task {env_config.task!r} (env.task); known: {', '.join(found['tasks'])}")


def make_isaac_env(env_config: Any):
    """The ``HostBridgeEnv`` of Bi-DexHands task ``env_config.task`` (one worker per pool unless ``host_workers``)."""
    from jax_mat.envs.host_bridge import HostBridgeEnv

    factory = env_config.host_env or DEFAULT_ENV_FACTORY
    recipe = BatchRecipe(
        adapter="jax_mat.host.bidexhands_api:open_bidexhands_batch",
        options={"task": env_config.task, "env_factory": factory},
        name=f"isaac:{env_config.task}" + (f" ({factory})" if env_config.host_env else ""),
    )
    workers = env_config.host_workers
    return HostBridgeEnv(recipe, workers_for=lambda n_envs: workers or 1, **pool_options(env_config))

