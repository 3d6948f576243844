"""Algorithm name -> policy network."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from jax_mat.envs.base import EnvSpec
from jax_mat.networks.marwkv import MARWKVPolicy
from jax_mat.networks.mat import MATConfig, MATPolicy
from jax_mat.networks.mlp import MLPPolicy
from jax_mat.networks.policy import Policy


def _mat(spec: EnvSpec, algo: Any) -> Policy:
    return MATPolicy(spec, algo.network_config())


def _mat_dec(spec: EnvSpec, algo: Any) -> Policy:
    config = algo.network_config()
    return MATPolicy(spec, dataclasses.replace(config, dec_actor=True))


def _marwkv(spec: EnvSpec, algo: Any) -> Policy:
    """MARWKV (``marwkv``) or MAT's encoder with an RWKV decoder (``mat_rwkv``), RWKV-``algo.rwkv_version``."""
    return MARWKVPolicy(spec, algo.network_config())


def _mlp(spec: EnvSpec, algo: Any) -> Policy:
    """MAPPO (one shared actor, per-agent critic) or HAPPO (per-agent actors, one state critic)."""
    if algo.name == "happo" and spec.n_agents < 2:
        raise ValueError(
            "HAPPO needs at least 2 agents (its sequential update corrects each agent by the ones before it); "
            "this environment has 1: use algo=mappo"
        )
    return MLPPolicy(spec, algo.network_config())


_BUILDERS: dict[str, Callable[[EnvSpec, Any], Policy]] = {
    "mat": _mat,
    "mat_dec": _mat_dec,
    "marwkv": _marwkv,
    "mat_rwkv": _marwkv,
    "mappo": _mlp,
    "happo": _mlp,
}


def known_algos() -> tuple[str, ...]:
    return tuple(_BUILDERS)


def make_policy(spec: EnvSpec, algo: Any) -> Policy:
    """Build the policy of ``algo.name`` (an ``AlgoConfig``) for an environment."""
    if algo.name not in _BUILDERS:
        raise ValueError(f"unknown algorithm '{algo.name}'; known: {', '.join(known_algos())}")
    return _BUILDERS[algo.name](spec, algo)
