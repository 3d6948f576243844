"""What the network test files share: the checks every ``Policy`` must pass, and cheap parameters and programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# LLVM -O0: halves XLA's CPU compile time, which dominates the network tests (their programs run in milliseconds).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def random_params(init, seed):
    """Parameters of ``init``'s structure drawn with numpy (compiling an init costs more than these tests).

    LayerNorm/GroupNorm scales near 1, kernels scaled by ``1/sqrt(fan_in)``,
    everything else (biases, RWKV mixing, decay and LoRA tensors, ``log_std``)
    ``0.3 * N(0, 1)``: no zero-initialised matrix or small-gain head hides a mistake.
    """
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        x = rng.normal(size=leaf.shape)
        name = path[-1].key
        if name == "scale":
            x = 1.0 + 0.1 * x
        elif name in ("kernel", "action_embed"):
            x = x / np.sqrt(leaf.shape[0])
        else:
            x = 0.3 * x
        return jnp.asarray(x, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(init, jax.random.PRNGKey(0)))


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
