"""Checks every ``Policy`` must pass, shared by the network test files."""

import jax
import jax.numpy as jnp
import pytest


def assert_rejects_bad_inputs(policy, params, obs, avail):
    """Wrong shapes, an agent without any available action and float discrete actions are ``ValueError``s.

    ``obs``: ``[B, N, O]`` and ``avail``: ``[B, N, A]`` valid inputs with ``B >= 2`` and ``N >= 3``.
    """
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="obs must have shape"):
        policy.act(params, obs[..., :-1], avail, key)
    with pytest.raises(ValueError, match="avail must have shape"):
        policy.act(params, obs, avail[..., :-1], key)
    with pytest.raises(ValueError, match="no available action for agent 2"):
        policy.act(params, obs, avail.at[1, 2].set(0.0), key)
    with pytest.raises(ValueError, match="discrete actions must be integers"):
        policy.evaluate(params, obs, jnp.zeros(obs.shape[:2]), avail)
