"""Building environments by name.

``make_env_from_config(cfg.env)`` (or ``make_env("smax", map_name="3m")``,
``make_env("mujoco", task="halfcheetah_6x1")``)
returns an auto-resetting ``MultiAgentEnv``, or for the host bridges (``smac``,
``isaac``: simulators in worker processes) a ``BatchedMultiAgentEnv``. ``check_env_config`` checks an
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
from jax_mat.envs.host_options import HOST_FIELDS
from jax_mat.envs.wrappers import AgentFeatures, AutoReset


def known_smax_maps() -> tuple[str, ...]:
    """SMAX map names, as registered in JaxMARL (3m, 2s3z, 25m, 3s5z, ...)."""
    from jax_mat.envs import smax

    return smax.known_smax_maps()


def _make_smax(map_name: str | None = None, time_limit: str = "smac", obs_agent_id: bool = True,
               obs_last_action: bool = True, **options: Any) -> MultiAgentEnv:
    """SMAX against JaxMARL's heuristic enemy, with upstream MAT's agent features (``AgentFeatures``) and the
    episode limit of ``time_limit`` (``smax.time_limit_steps``); other ``options`` go to ``SmaxEnv``."""
    from jax_mat.envs import smax

    if map_name is None:
        raise ValueError(f"env 'smax' needs the option map_name; known: {', '.join(smax.known_smax_maps())}")
    options.setdefault("max_steps", smax.time_limit_steps(map_name, time_limit))
    raw = smax.SmaxEnv(map_name, **options)
    if obs_agent_id or obs_last_action:
        raw = AgentFeatures(raw, obs_agent_id, obs_last_action, visibility=raw.ally_visibility)
    return AutoReset(raw)


def _check_smax(env_config: Any) -> None:
    from jax_mat.envs.smax import check_smax_map, time_limit_steps

    check_smax_map(env_config.map)
    time_limit_steps(env_config.map, env_config.time_limit)


def _make_smax_multi(
    maps: tuple[str, ...] = (), pad_allies: int = 0, pad_enemies: int = 0, **options: Any
) -> MultiAgentEnv:
    """Several SMAX maps padded to common sizes (``envs.smax_multi``); auto-resets per map group.
    ``options``: ``time_limit``, ``obs_agent_id``, ``obs_last_action`` and the ``SmaxEnv`` options."""
    from jax_mat.envs import smax_multi

    return smax_multi.SmaxMultiEnv(tuple(maps), pad_allies, pad_enemies, **options)


def _check_smax_multi(env_config: Any) -> None:
    from jax_mat.envs.smax import time_limit_steps
    from jax_mat.envs.smax_multi import common_sizes

    common_sizes(env_config.maps, env_config.pad_allies, env_config.pad_enemies)
    for map_name in env_config.maps:
        time_limit_steps(map_name, env_config.time_limit)


def _check_smax_multi_run(config: Any) -> None:
    """Every map gets an equal share of the rollout and evaluation environments."""
    from jax_mat.envs.smax_multi import group_size

    n_maps = len(config.env.maps)
    group_size(config.train.n_envs, n_maps, "train.n_envs")
    group_size(config.train.eval_episodes, n_maps, "train.eval_episodes")


def _check_smac(env_config: Any) -> None:
    from jax_mat.envs.smac import check_smac_config

    check_smac_config(env_config)


def _build_smac(env_config: Any):
    from jax_mat.envs.smac import make_smac_env

    return make_smac_env(env_config)


def _check_isaac(env_config: Any) -> None:
    from jax_mat.envs.isaac import check_isaac_config

    check_isaac_config(env_config)


def _build_isaac(env_config: Any):
    from jax_mat.envs.isaac import make_isaac_env

    return make_isaac_env(env_config)


def _make_mujoco(
    task: str | None = None, disabled_joints: tuple[str, ...] = (), agent_obsk: int = 0, **options: Any
) -> MultiAgentEnv:
    """Multi-agent MuJoCo on MJX; ``options`` (``max_episode_steps``) go to ``MujocoMultiEnv``."""
    from jax_mat.envs import mujoco

    return AutoReset(mujoco.MujocoMultiEnv(task or "", tuple(disabled_joints), agent_obsk, **options))


def _check_mujoco(env_config: Any) -> None:
    from jax_mat.envs.mujoco_tasks import check_options

    check_options(env_config.task, env_config.disabled_joints, env_config.agent_obsk)


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    """How the registry handles one environment name."""

    check: Callable[[Any], None]  # EnvConfig -> None, raises ValueError
    build: Callable[[Any], MultiAgentEnv]  # EnvConfig -> auto-resetting env (or a BatchedMultiAgentEnv)
    variant_field: str  # the EnvConfig field that names the run's task ("map", "task", "maps")
    fields: tuple[str, ...]  # the EnvConfig fields this environment reads
    make: Callable[..., MultiAgentEnv] | None = None  # make_env(name, **options)
    check_run: Callable[[Any], None] | None = None  # Config -> None: the env's constraints on train.*
    vmappable: bool = True  # False: stepped by ordered host callbacks, which jax.vmap (a seed sweep) refuses
    # Why its environment batch cannot be split over devices ("": it can: per-environment arrays in XLA).
    no_device_split: str = ""
    has_wins: bool = True  # episodes can be won (the CLI reports a win rate)
    # The report's domain, whose per-algorithm settings ``jax_mat/configs/algo/<domain>/<algo>.yaml`` apply.
    domain: str = ""
    description: str = ""  # one line for ``python -m jax_mat.train --list``


# What upstream MAT's StarCraft environment appends to observations (``wrappers.AgentFeatures``).
_AGENT_FEATURE_FIELDS = ("obs_agent_id", "obs_last_action")
_SMAX_FIELDS = ("time_limit", *_AGENT_FEATURE_FIELDS)

_HOST_NO_SPLIT = (
    "its simulators live in this process's worker pool, stepped by one ordered host callback that XLA runs "
    "on a single device, and its state is a handle to that pool, not per-environment arrays"
)

_ENTRIES: dict[str, EnvEntry] = {
    "smax": EnvEntry(
        description="SMAX (JaxMARL): StarCraft-like battles simulated in JAX; env.map=<map>",
        domain="smac",
        check=_check_smax,
        build=lambda c: _make_smax(c.map, c.time_limit, c.obs_agent_id, c.obs_last_action),
        variant_field="map",
        fields=("map", *_SMAX_FIELDS),
        make=_make_smax,
    ),
    "smax_multi": EnvEntry(
        description="several SMAX maps as one task, padded to common sizes; env.maps=[<map>,...]",
        domain="smac",
        check=_check_smax_multi,
        build=lambda c: _make_smax_multi(c.maps, c.pad_allies, c.pad_enemies, time_limit=c.time_limit,
                                         obs_agent_id=c.obs_agent_id, obs_last_action=c.obs_last_action),
        variant_field="maps",
        fields=("maps", "pad_allies", "pad_enemies", *_SMAX_FIELDS),
        make=_make_smax_multi,
        check_run=_check_smax_multi_run,
        no_device_split="its state is one group of environments per map, not one [n_envs] batch to split",
    ),
    # Host bridges (envs.host_bridge): batched environments stepping simulators in worker processes.
    "smac": EnvEntry(
        description="SMAC: the real StarCraft II through the host bridge (needs SMAC, StarCraft II); env.map=<map>",
        domain="smac",
        check=_check_smac,
        build=_build_smac,
        variant_field="map",
        fields=("map", *_AGENT_FEATURE_FIELDS, *HOST_FIELDS),
        vmappable=False,
        no_device_split=_HOST_NO_SPLIT,
    ),
    "isaac": EnvEntry(
        description="Bi-DexHands on Isaac Gym through the host bridge (needs both installed); env.task=<task>",
        domain="isaac",
        check=_check_isaac,
        build=_build_isaac,
        variant_field="task",
        fields=("task", *HOST_FIELDS),
        vmappable=False,
        no_device_split=_HOST_NO_SPLIT,
        has_wins=False,
    ),
    "mujoco": EnvEntry(
        description="multi-agent MuJoCo (MaMuJoCo's agent partitions) simulated by MJX; env.task=<task>",
        domain="mujoco",
        check=_check_mujoco,
        build=lambda c: _make_mujoco(c.task, c.disabled_joints, c.agent_obsk),
        variant_field="task",
        fields=("task", "disabled_joints", "agent_obsk"),
        make=_make_mujoco,
        has_wins=False,
    ),
}

# EnvConfig fields that select an environment's variant or options (``name`` aside).
_OPTION_FIELDS = ("map", "task", "maps", "disabled_joints", "agent_obsk", "pad_allies", "pad_enemies", *_SMAX_FIELDS,
                  *HOST_FIELDS)


def known_envs() -> tuple[str, ...]:
    """Environment names ``env.name`` and ``make_env`` accept."""
    return tuple(_ENTRIES)


def env_description(name: str) -> str:
    """One line saying what environment ``name`` is (``python -m jax_mat.train --list``)."""
    return _entry(name).description


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


def supports_seed_sweeps(name: str) -> bool:
    """Whether environment ``name`` runs under ``jax.vmap`` over seeds (host bridges do not)."""
    return _entry(name).vmappable


def supports_device_splits(name: str) -> bool:
    """Whether environment ``name``'s batch can be split over devices: its state is one ``[n_envs]`` batch of
    arrays stepped inside XLA (a host bridge's is a handle to this process's worker pool)."""
    return not _entry(name).no_device_split


def no_device_split_reason(name: str) -> str:
    """Why environment ``name``'s batch cannot be split over devices ("" when it can)."""
    return _entry(name).no_device_split


def env_fields(name: str) -> tuple[str, ...]:
    """The ``EnvConfig`` fields environment ``name`` reads (none for an unknown name)."""
    entry = _ENTRIES.get(name)
    return entry.fields if entry is not None else ()


def domain(name: str) -> str:
    """The report's domain of environment ``name`` (SMAX and SMAC: ``"smac"``), whose per-algorithm settings
    ``jax_mat/configs/algo/<domain>/<algo>.yaml`` hold; an unknown name is its own (``check_env_config`` reports it)."""
    entry = _ENTRIES.get(name)
    return entry.domain if entry is not None else name


def env_variant(env_config: Any) -> str:
    """The map or task a config names (``"3m"``, ``"halfcheetah_6x1"``), for run names."""
    value = getattr(env_config, _entry(env_config.name).variant_field)
    return "+".join(value) if isinstance(value, tuple) else str(value)


def has_wins(env_config: Any) -> bool:
    """Whether the environment's episodes can be won (SMAX) or only scored (MuJoCo)."""
    return _entry(env_config.name).has_wins


def make_env(name: str, **options: Any) -> MultiAgentEnv:
    """Builds the auto-resetting environment ``name`` with ``options``.

    Args:
      name: one of ``known_envs()``; ``"smax"`` takes ``map_name`` (one of
        ``known_smax_maps()``) and the ``SmaxEnv`` options; ``"smax_multi"``
        takes ``maps`` and optionally ``pad_allies``/``pad_enemies`` and
        returns a ``BatchedMultiAgentEnv`` (``envs.smax_multi.SmaxMultiEnv``);
        ``"mujoco"`` takes ``task`` (``halfcheetah_6x1``, ``ant_2x4``,
        ``walker2d_2x3``), ``disabled_joints``, ``agent_obsk`` and ``max_episode_steps``.
      **options: environment options.

    Raises:
      ValueError: unknown environment name, map, task or joint (the message
        lists the known ones; MMM maps point to ``env=smac``).
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
