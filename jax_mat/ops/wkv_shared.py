"""What the WKV forms share: input checks, the accumulation dtype, the time-major layout, the chunk size."""

from __future__ import annotations

import jax.numpy as jnp

CHUNK = 16  # positions per chunk of the chunked forms
NEG_INF = -1e38  # upstream's initial running max


def check_float(name: str, x) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got {x.dtype}")


def check_same(op: str, what: str, named: dict) -> None:
    """All arrays in ``named`` share ``what`` ("shape" or "dtype")."""
    values = {n: getattr(x, what) for n, x in named.items()}
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{n} {tuple(v) if what == 'shape' else v}" for n, v in values.items())
        raise ValueError(f"{op}: {', '.join(named)} must have the same {what}, got {listed}")


def acc_dtype(*dtypes) -> jnp.dtype:
    """float32 for bfloat16/float16 inputs, else the widest input type."""
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)



def time_major(*xs):
    return tuple(jnp.swapaxes(x, 0, 1) for x in xs)
