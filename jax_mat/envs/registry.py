"""Building environments by name.

``make_env_from_config(cfg.env)`` (or ``make_env("smax", map_name="3m")``)
returns an auto-resetting ``MultiAgentEnv``. ``check_env_config`` checks an
``EnvConfig`` against its environment (unknown maps, tasks, options) and runs
when the config is built, before anything is traced; mistakes raise
``ValueError`` listing what is known. Environment modules are imported lazily:
importing JaxMARL or MJX takes seconds.

Each environment registers one ``EnvEntry``: how to check a config, how to
build from one, which config field names its variant (the map or the task)
and which fields it reads (setting any other environment's field is an error,
so ``env.task=...`` on SMAX does not pass silently), and optionally what it
needs of the run's ``train`` settings (``check_run_config``, which ``Config``
calls: ``smax_multi`` shares its environments equally between its maps).
"""

from __future__ import annotations

import dataclasses
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


def _check_smax(env_config: Any) -> None:
    from jax_mat.envs.smax import check_smax_map

    check_smax_map(env_config.map)


def _make_smax_multi(
    maps: tuple[str, ...] = (), pad_allies: int = 0, pad_enemies: int = 0, **options: Any
) -> MultiAgentEnv:
    """Several SMAX maps padded to common sizes (``envs.smax_multi``); auto-resets per map group."""
    from jax_mat.envs import smax_multi

    return smax_multi.SmaxMultiEnv(tuple(maps), pad_allies, pad_enemies, **options)


def _check_smax_multi(env_config: Any) -> None:
    from jax_mat.envs.smax_multi import common_sizes

    common_sizes(env_config.maps, env_config.pad_allies, env_config.pad_enemies)


def _check_smax_multi_run(config: Any) -> None:
    """Every map gets an equal share of the rollout and evaluation environments."""
    from jax_mat.envs.smax_multi import group_size

    n_maps = len(config.env.maps)
    group_size(config.train.n_envs, n_maps, "train.n_envs")
    group_size(config.train.eval_episodes, n_maps, "train.eval_episodes")


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    """How the registry handles one environment name."""

    check: Callable[[Any], None]  # EnvConfig -> None, raises ValueError
    build: Callable[[Any], MultiAgentEnv]  # EnvConfig -> auto-resetting env
    variant_field: str  # the EnvConfig field that names the run's task ("map", "task", "maps")
    fields: tuple[str, ...]  # the EnvConfig fields this environment reads
    make: Callable[..., MultiAgentEnv] | None = None  # make_env(name, **options)
    check_run: Callable[[Any], None] | None = None  # Config -> None: the env's constraints on train.*


_ENTRIES: dict[str, EnvEntry] = {
    "smax": EnvEntry(
        check=_check_smax,
        build=lambda c: _make_smax(map_name=c.map),
        variant_field="map",
        fields=("map",),
        make=_make_smax,
    ),
    "smax_multi": EnvEntry(
        check=_check_smax_multi,
        build=lambda c: _make_smax_multi(c.maps, c.pad_allies, c.pad_enemies),
        variant_field="maps",
        fields=("maps", "pad_allies", "pad_enemies"),
        make=_make_smax_multi,
        check_run=_check_smax_multi_run,
    ),
}

# EnvConfig fields that select an environment's variant or options (``name`` aside).
_OPTION_FIELDS = ("map", "task", "maps", "disabled_joints", "agent_obsk", "pad_allies", "pad_enemies")


def known_envs() -> tuple[str, ...]:
    """Environment names ``env.name`` and ``make_env`` accept."""
    return tuple(_ENTRIES)


def _entry(name: str) -> EnvEntry:
    entry = _ENTRIES.get(name)
    if entry is None:
        raise ValueError(f"unknown environment {name!r} (env.name); known: {', '.join(known_envs())}")
    return entry


def check_env_config(env_config: Any) -> None:
    """Raises ``ValueError`` unless ``env_config`` (an ``EnvConfig``) names a known environment and valid options.

    Fields that another environment reads must keep their defaults.
    """
    entry = _entry(env_config.name)
    defaults = {f.name: f.default for f in dataclasses.fields(env_config)}
    for field in _OPTION_FIELDS:
        if field not in entry.fields and getattr(env_config, field) != defaults[field]:
            raise ValueError(
                f"env.{field} does not apply to env.name={env_config.name}; it reads "
                f"{', '.join('env.' + f for f in entry.fields) or 'no options'}"
            )
    entry.check(env_config)


def check_run_config(config: Any) -> None:
    """Raises ``ValueError`` when a ``Config``'s ``train`` settings do not suit its environment
    (``smax_multi``: environment counts that its maps cannot share equally)."""
    check_run = _entry(config.env.name).check_run
    if check_run is not None:
        check_run(config)


def env_variant(env_config: Any) -> str:
    """The map or task a config names (``"3m"``, ``"halfcheetah_6x1"``), for run names."""
    value = getattr(env_config, _entry(env_config.name).variant_field)
    return "+".join(value) if isinstance(value, tuple) else str(value)


def make_env(name: str, **options: Any) -> MultiAgentEnv:
    """Builds the auto-resetting environment ``name`` with ``options``.

    Args:
      name: one of ``known_envs()``; ``"smax"`` takes ``map_name`` (one of
        ``known_smax_maps()``) and the ``SmaxEnv`` options; ``"smax_multi"``
        takes ``maps`` and optionally ``pad_allies``/``pad_enemies`` and
        returns a ``BatchedMultiAgentEnv`` (``envs.smax_multi.SmaxMultiEnv``).
      **options: environment options.

    Raises:
      ValueError: unknown environment name or map (the message lists the
        known ones; MMM maps point to ``env=smac``).
    """
    entry = _ENTRIES.get(name)
    if entry is None:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(known_envs())}")
    if entry.make is None:
        raise ValueError(f"environment {name!r} is built from a config: use make_env_from_config")
    return entry.make(**options)


def make_env_from_config(env_config: Any) -> MultiAgentEnv:
    """Builds the auto-resetting environment an ``EnvConfig`` names."""
    return _entry(env_config.name).build(env_config)
