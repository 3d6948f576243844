"""Multi-agent environments: the protocol, wrappers and a name registry.

``SmaxEnv`` lives in ``jax_mat.envs.smax`` and is not imported here, because
importing JaxMARL takes several seconds; ``make_env`` imports it on demand.
"""

from jax_mat.envs.base import EnvSpec, MultiAgentEnv, Timestep
from jax_mat.envs.registry import known_envs, known_smax_maps, make_env
from jax_mat.envs.wrappers import AutoReset, AutoResetState, RawMultiAgentEnv

__all__ = [
    "AutoReset",
    "AutoResetState",
    "EnvSpec",
    "MultiAgentEnv",
    "RawMultiAgentEnv",
    "Timestep",
    "known_envs",
    "known_smax_maps",
    "make_env",
]
