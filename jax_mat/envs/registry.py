"""Building environments by name.

``make_env("smax", map_name="3m")`` returns an auto-resetting
``MultiAgentEnv``. Names and options are checked immediately, before anything
is traced, and mistakes raise ``ValueError`` listing what is known.
Environment modules are imported lazily: importing JaxMARL takes seconds.
"""

from __future__ import annotations

from typing import Any, Callable

from jax_mat.envs.base import MultiAgentEnv
from jax_mat.envs.wrappers import AutoReset


def known_smax_maps() -> tuple[str, ...]:
    """SMAX map names, as registered in JaxMARL (3m, 2s3z, 25m, 3s5z, ...)."""
    from jax_mat.envs import smax

    return smax.known_smax_maps()


def _make_smax(map_name: str | None = None, **options: Any) -> MultiAgentEnv:
    """SMAX against JaxMARL's heuristic enemy; ``options`` go to ``SmaxEnv``."""
    from jax_mat.envs import smax

    if map_name is None:
        raise ValueError(f"env 'smax' needs the option map_name; known: {', '.join(smax.known_smax_maps())}")
    return AutoReset(smax.SmaxEnv(map_name, **options))


_BUILDERS: dict[str, Callable[..., MultiAgentEnv]] = {
    "smax": _make_smax,
}


def known_envs() -> tuple[str, ...]:
    """Environment names ``make_env`` accepts."""
    return tuple(_BUILDERS)


def make_env(name: str, **options: Any) -> MultiAgentEnv:
    """Builds the auto-resetting environment ``name`` with ``options``.

    Args:
      name: one of ``known_envs()``; ``"smax"`` takes ``map_name`` (one of
        ``known_smax_maps()``) and the ``SmaxEnv`` options.
      **options: environment options.

    Raises:
      ValueError: unknown environment name or map (the message lists the
        known ones; MMM maps point to ``env=smac``).
    """
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(known_envs())}")
    return builder(**options)


def make_env_from_config(env_config: Any) -> MultiAgentEnv:
    """Builds the environment an ``EnvConfig`` names."""
    if env_config.name == "smax":
        return make_env("smax", map_name=env_config.map)
    return make_env(env_config.name)
