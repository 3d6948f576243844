"""SMAC on the real StarCraft II through the host bridge: ``env=smac env.map=MMM2``.

Each environment is a ``smac.env.StarCraft2Env(obs_last_action=env.obs_last_action)`` in a worker process
(``jax_mat.host.smac_api`` reads it), stepped from the jitted rollout by
``envs.host_bridge.HostBridgeEnv``. The policy acts in SMAC's own action order
(0 no-op, 1 stop, 2-5 move, 6+ attack); a dead agent has only the no-op. As upstream MAT's own copy of
SMAC's environment, each observation carries the last actions (``env.obs_last_action``, SMAC's option) and
ends with the agent's one-hot id (``env.obs_agent_id``, appended by ``jax_mat.host.smac_api``).

Installing what it needs (checked when the config is built, before anything
starts):

* SMAC: ``pip install git+https://github.com/oxwhirl/smac.git`` (PyPI's
  ``smac`` is SMAC3, an unrelated hyperparameter optimiser);
* StarCraft II: the Linux build from Blizzard's s2client-proto downloads,
  unzipped to ``~/StarCraftII`` or wherever ``SC2PATH`` points;
* SMAC's maps: ``SMAC_Maps.zip`` from SMAC's releases, extracted into
  ``$SC2PATH/Maps`` (so that ``$SC2PATH/Maps/SMAC_Maps/MMM2.SC2Map`` exists).

``env.host_env`` replaces ``smac.env:StarCraft2Env`` by another constructor with
its interface (``jax_mat.standins.smax_smac:StarCraft2Env`` plays SMAX battles);
then none of the StarCraft II checks apply, and an unknown map is reported by
that constructor when the environment is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jax_mat.envs.host_options import check_host_options, module_exists, pool_options
from jax_mat.host.pool import BatchRecipe
from jax_mat.host.smac_api import DEFAULT_ENV_FACTORY

SMAC_INSTALL = (
    "install SMAC with: pip install git+https://github.com/oxwhirl/smac.git "
    "(PyPI's 'smac' is SMAC3, a different project)"
)
SC2_INSTALL = (
    "install StarCraft II (Linux: the build from Blizzard's s2client-proto downloads, unzipped to "
    "~/StarCraftII) and set SC2PATH to its folder if it is elsewhere"
)
MAPS_INSTALL = "extract SMAC's SMAC_Maps.zip (from SMAC's releases) into $SC2PATH/Maps"


def sc2_path() -> Path:
    """Where StarCraft II is expected: ``$SC2PATH``, else pysc2's Linux default ``~/StarCraftII``."""
    return Path(os.environ.get("SC2PATH", "~/StarCraftII")).expanduser()


def known_smac_maps() -> tuple[str, ...]:
    """The maps in SMAC's registry (needs the ``smac`` package)."""
    from smac.env.starcraft2.maps import smac_maps

    return tuple(smac_maps.get_smac_map_registry())


def check_smac_config(env_config: Any) -> None:
    """Raises ``ValueError`` unless the config can run: SMAC and StarCraft II installed, the map known and present."""
    check_host_options(env_config)
    if env_config.host_env:
        return
    if not module_exists("smac.env"):
        raise ValueError(f"env=smac needs the StarCraft Multi-Agent Challenge package, which is not installed: "
                         f"{SMAC_INSTALL}")
    sc2 = sc2_path()
    if not (sc2 / "Versions").is_dir():
        where = f"SC2PATH={os.environ['SC2PATH']}" if "SC2PATH" in os.environ else "SC2PATH is not set, default"
        raise ValueError(f"env=smac needs StarCraft II, not found at {sc2} ({where}): {SC2_INSTALL}")
    known = known_smac_maps()
    if env_config.map not in known:
        raise ValueError(f"unknown SMAC map {env_config.map!r}; known: {', '.join(known)}")
    map_file = sc2 / "Maps" / "SMAC_Maps" / f"{env_config.map}.SC2Map"
    if not map_file.is_file():
        raise ValueError(f"SMAC map {env_config.map} is not installed (no {map_file}): {MAPS_INSTALL}")


def make_smac_env(env_config: Any):
    """The ``HostBridgeEnv`` of SMAC map ``env_config.map`` (one worker per environment unless ``host_workers``)."""
    from jax_mat.envs.host_bridge import HostBridgeEnv

    factory = env_config.host_env or DEFAULT_ENV_FACTORY
    recipe = BatchRecipe(
        adapter="jax_mat.host.smac_api:open_smac_batch",
        options={"map_name": env_config.map, "env_factory": factory, "obs_agent_id": env_config.obs_agent_id,
                 # SMAC's own option (its default is False; upstream MAT's StarCraft2Env turns it on)
                 "env_kwargs": {"obs_last_action": env_config.obs_last_action}},
        name=f"smac:{env_config.map}" + (f" ({factory})" if env_config.host_env else ""),
    )
    workers = env_config.host_workers
    return HostBridgeEnv(recipe, workers_for=lambda n_envs: workers or n_envs, **pool_options(env_config))
