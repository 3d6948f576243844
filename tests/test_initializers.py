"""The LAPACK-free orthogonal initialiser: flax's matrices, and no custom call under vmap."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from jax_mat.networks.initializers import orthogonal


@pytest.mark.parametrize("shape", [(75, 64), (64, 64), (64, 9), (3, 64), (647, 64), (64, 192), (5, 4, 3)])
def test_orthogonal_draws_flax_matrices(shape):
    key = jax.random.PRNGKey(7)
    ours, flax_init = orthogonal(1.3)(key, shape), nn.initializers.orthogonal(scale=1.3)(key, shape)
    np.testing.assert_allclose(ours, flax_init, atol=3e-6)
    m = np.asarray(ours).reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, 1.3**2 * np.eye(gram.shape[0]), atol=1e-5)


def test_vmapped_orthogonal_init_calls_no_lapack_kernel():
    """A batched LAPACK QR can deadlock XLA's CPU thread pool (see the module docstring)."""
    init = jax.vmap(lambda k: orthogonal(1.0)(k, (16, 8)))
    text = jax.jit(init).lower(jax.random.split(jax.random.PRNGKey(0), 4)).as_text()
    assert "custom_call" not in text and "lapack" not in text.lower()
    assert jax.jit(init)(jax.random.split(jax.random.PRNGKey(0), 4)).shape == (4, 16, 8)
