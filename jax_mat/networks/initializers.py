"""Parameter initialisers that are safe under ``vmap`` on every backend.

``orthogonal(scale)`` draws the same matrices as ``flax.linen.initializers.orthogonal``
(and torch's ``nn.init.orthogonal_``): a standard normal matrix, the ``Q`` of its
QR decomposition with ``R``'s diagonal made positive, transposed for wide
shapes, times ``scale``. The ``Q`` comes from classical Gram-Schmidt applied twice
("CGS2", numerically as orthogonal as Householder QR) in plain JAX operations
instead of LAPACK: on the CPU, jaxlib 0.10.2's batched QR (what ``vmap`` makes
of per-agent actors or of a seed sweep's initialisation) splits its batch over
XLA's intra-op thread pool and blocks a pool thread until the pieces finish;
two such calls at once on a 2-core machine wait on each other forever (seen as
an idle, hung ``Trainer.init``). The QR with a positive ``R`` diagonal is
unique, so both paths give the same matrix up to rounding (tested).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def orthonormal_columns(a: jax.Array) -> jax.Array:
    """``Q`` ``[m, n]`` (``m >= n``) with ``a = Q R``, ``R`` upper triangular with a positive diagonal."""
    m, n = a.shape

    def column(j, q):
        v = a[:, j]
        for _ in range(2):  # the second pass removes what rounding left of the earlier directions
            v = v - q @ (q.T @ v)  # columns >= j of q are still zero
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, n, column, jnp.zeros((m, n), a.dtype))


def orthogonal(scale: float = 1.0, column_axis: int = -1):
    """An orthogonal initialiser with ``flax.linen.initializers.orthogonal``'s semantics and random draws."""

    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initialisation needs at least 2 dimensions, got shape {shape}")
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        matrix_shape = (n_cols, n_rows) if n_rows < n_cols else (n_rows, n_cols)
        q = orthonormal_columns(jax.random.normal(key, matrix_shape, dtype))
        if n_rows < n_cols:
            q = q.T
        q = q.reshape(tuple(s for i, s in enumerate(shape) if i != column_axis % len(shape)) + (n_cols,))
        return scale * jnp.moveaxis(q, -1, column_axis)

    return init
