"""The ``EnvConfig`` fields of the host-bridge environments (``smac``, ``isaac``) and their checks.

``host_env`` names the host simulator's constructor as ``"module:attribute"``
(empty: the real one), ``host_workers`` the worker processes per pool,
``host_timeout_s`` how long a worker may stay silent on a step, ``host_python``
the interpreter the workers run. Checked at config time without importing the
simulator (``importlib.util.find_spec`` only), so mistakes fail before
anything is built or compiled.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

HOST_FIELDS = ("host_env", "host_workers", "host_timeout_s", "host_python")

# Starting a worker and its first reset may launch a simulator (StarCraft II takes tens of seconds).
MIN_START_TIMEOUT_S = 300.0


def module_exists(name: str) -> bool:
    """Whether ``import name`` could find the module (parent packages are imported to look)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_host_options(env_config: Any) -> None:
    """Raises ``ValueError`` for a malformed ``host_env``, a negative worker count, a bad timeout or interpreter."""
    name = env_config.name
    if env_config.host_workers < 0:
        raise ValueError(f"env.host_workers must be >= 0 (0: the {name} default), got {env_config.host_workers}")
    if not env_config.host_timeout_s > 0:
        raise ValueError(f"env.host_timeout_s must be > 0 seconds, got {env_config.host_timeout_s}")
    python = env_config.host_python
    if python and shutil.which(python) is None and not os.access(python, os.X_OK):
        raise ValueError(f"env.host_python={python!r} is not an executable Python interpreter")
    if env_config.host_env:
        module, sep, attribute = env_config.host_env.partition(":")
        if not sep or not module or not attribute:
            raise ValueError(
                f"env.host_env must name a constructor as 'package.module:attribute' "
                f"(e.g. jax_mat.standins.smax_smac:StarCraft2Env), got {env_config.host_env!r}"
            )
        if not python and not module_exists(module):
            raise ValueError(
                f"env.host_env={env_config.host_env!r}: no module {module!r} can be imported from here "
                f"(for tests.standins.*, the test-only stand-ins, run from the repository root)"
            )


def pool_options(env_config: Any) -> dict[str, Any]:
    """``HostBridgeEnv`` keyword arguments from the config: timeouts and the workers' interpreter."""
    return {
        "step_timeout_s": env_config.host_timeout_s,
        "start_timeout_s": max(MIN_START_TIMEOUT_S, env_config.host_timeout_s),
        "python": env_config.host_python,
    }
