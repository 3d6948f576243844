"""The algorithm table: every algorithm jax_mat trains, each in one entry.

An entry says what ``algo.name=NAME`` means: its network (the ``Policy`` built for an environment's
``EnvSpec`` from the network's own config class, projected out of ``AlgoConfig``), its learner (joint PPO
or HAPPO's sequential update), and its settings per domain (the report's per-domain tables, e.g. MARWKV's
SMAC learning rate, Table 2), which the config loader layers just above ``default.yaml``. Everything else
(the config's checks, run names, ``--list``, the trainer) asks this table.

Adding an algorithm: write its network (a ``Policy``, ``jax_mat/networks/``) and, if it does not train with
joint PPO, its learner (``jax_mat/algos/``); add one ``Algorithm`` here and a selector file
``jax_mat/configs/algo/<name>.yaml``.

Networks and learners are imported when first built, so reading the table imports neither Flax nor optax.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One algorithm: how to build its network and its learner from an ``AlgoConfig``."""

    name: str
    description: str  # one line for ``python -m jax_mat.train --list``
    network_config: Callable[[Any], Any]  # AlgoConfig -> the network's config (MATConfig, MARWKVConfig, MLPConfig)
    policy: Callable[[Any, Any], Any]  # (EnvSpec, network config) -> Policy; ValueError if the env does not suit
    learner: Callable[..., Any] = None  # (AlgoConfig, Policy, minibatch placement) -> learner; None: joint PPO
    # {domain: {AlgoConfig field: value}}: the report's settings of this algorithm in that domain
    # (``envs.registry.domain``), above default.yaml and below every file or key the run names.
    domain_defaults: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    versioned: bool = False  # built on RWKV: runs and tables name it with its version (marwkv_v6) unless 4


# -- networks ------------------------------------------------------------------------------------ #


def _mat_config(algo: Any):
    from jax_mat.networks.mat import MATConfig

    return MATConfig(n_block=algo.n_block, n_embd=algo.n_embd, n_head=algo.n_head, dec_actor=algo.dec_actor,
                     share_actor=algo.share_actor, zero_std=algo.zero_std)


def _mat_policy(spec: Any, config: Any):
    from jax_mat.networks.mat import MATPolicy

    return MATPolicy(spec, config)


def _marwkv_config(hybrid: bool) -> Callable[[Any], Any]:
    def project(algo: Any):
        from jax_mat.networks.marwkv import MARWKVConfig

        return MARWKVConfig(version=algo.rwkv_version, n_block=algo.n_block, n_embd=algo.n_embd,
                            n_head=algo.n_head, hybrid=hybrid, wkv_impl=algo.wkv_impl, zero_std=algo.zero_std)

    return project


def _marwkv_policy(spec: Any, config: Any):
    from jax_mat.networks.marwkv import MARWKVPolicy

    return MARWKVPolicy(spec, config)


def _mlp_config(mappo: bool) -> Callable[[Any], Any]:
    """MAPPO: one shared actor and a critic per agent; HAPPO: an actor per agent and one state critic."""

    def project(algo: Any):
        from jax_mat.networks.mlp import MLPConfig

        return MLPConfig(hidden=algo.n_embd, n_layers=algo.mlp_layers, share_actor=mappo, agent_critic=mappo)

    return project


def _mlp_policy(spec: Any, config: Any):
    from jax_mat.networks.mlp import MLPPolicy

    return MLPPolicy(spec, config)


def _happo_policy(spec: Any, config: Any):
    if spec.n_agents < 2:
        raise ValueError(
            "HAPPO needs at least 2 agents (its sequential update corrects each agent by the ones before it); "
            "this environment has 1: use algo=mappo"
        )
    return _mlp_policy(spec, config)


# -- learners ------------------------------------------------------------------------------------ #


def _ppo_learner(algo: Any, policy: Any, place: Any = None):
    from jax_mat.algos.learner import PPOLearner

    return PPOLearner(algo, policy, place)


def _happo_learner(algo: Any, policy: Any, place: Any = None):
    from jax_mat.algos.happo import HAPPOLearner

    return HAPPOLearner(algo, policy, place)


# -- the table ----------------------------------------------------------------------------------- #

_SMAC_RWKV = {"smac": {"lr": 1e-3}}  # report Table 2: MARWKV's SMAC learning rate, twice MAT's

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("mat", "MAT: the centralised autoregressive decoder over agents (Wen et al. 2022)",
              _mat_config, _mat_policy),
    Algorithm("mat_dec", "MAT-Dec: MAT's encoder as critic, decentralised MLP actors",
              _mat_config, _mat_policy),
    Algorithm("marwkv", "MARWKV: MAT with RWKV v4/v5/v6 blocks over agents, decoded recurrently",
              _marwkv_config(hybrid=False), _marwkv_policy, domain_defaults=_SMAC_RWKV, versioned=True),
    Algorithm("mat_rwkv", "MAT's attention encoder with an RWKV decoder",
              _marwkv_config(hybrid=True), _marwkv_policy, domain_defaults=_SMAC_RWKV, versioned=True),
    Algorithm("mappo", "MAPPO: one shared MLP actor, a critic per agent (Yu et al. 2022)",
              _mlp_config(mappo=True), _mlp_policy),
    Algorithm("happo", "HAPPO: per-agent MLP actors updated in turn, one state critic (Kuba et al. 2022)",
              _mlp_config(mappo=False), _happo_policy, learner=_happo_learner),
)}


def known_algos() -> tuple[str, ...]:
    """The names ``algo.name`` accepts, in the table's order."""
    return tuple(ALGORITHMS)


def algorithm(name: str) -> Algorithm:
    """The entry of ``name``; ``ValueError`` listing the known ones otherwise."""
    entry = ALGORITHMS.get(name)
    if entry is None:
        raise ValueError(f"unknown algorithm {name!r} (algo.name); known: {', '.join(known_algos())}")
    return entry


def network_config(algo: Any) -> Any:
    """The network config of ``algo`` (an ``AlgoConfig``); its own checks run here (``ValueError``)."""
    return algorithm(algo.name).network_config(algo)


def make_policy(spec: Any, algo: Any) -> Any:
    """The ``Policy`` of ``algo`` (an ``AlgoConfig``) for an environment's ``spec``."""
    entry = algorithm(algo.name)
    return entry.policy(spec, entry.network_config(algo))


def make_learner(algo: Any, policy: Any, shard_minibatches: Any = None) -> Any:
    """The learner of ``algo``: HAPPO's sequential update, or joint PPO (``algos.learner.PPOLearner``).

    ``shard_minibatches`` places every epoch's minibatches (``training.distributed``).
    """
    entry = algorithm(algo.name)
    return (entry.learner or _ppo_learner)(algo, policy, shard_minibatches)


def domain_defaults(name: str, domain: str) -> dict[str, Any]:
    """``{"algo.<field>": value}``: the settings of algorithm ``name`` in ``domain`` (none for an unknown name)."""
    entry = ALGORITHMS.get(name)
    settings = entry.domain_defaults.get(domain, {}) if entry is not None else {}
    return {f"algo.{field}": value for field, value in settings.items()}


def run_algo_name(algo: Any) -> str:
    """The algorithm as runs and tables name it: ``algo.name``, with ``_v5``/``_v6`` for RWKV versions other
    than 4 (``marwkv_v6``)."""
    entry = ALGORITHMS.get(algo.name)
    if entry is not None and entry.versioned and algo.rwkv_version != 4:
        return f"{algo.name}_v{algo.rwkv_version}"
    return algo.name
