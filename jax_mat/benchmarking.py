"""Timing jitted steps for the ``scripts/bench_*.py`` benchmarks."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax


def time_steps(step: Callable[[Any], Any], state: Any, repeats: int) -> tuple[Any, float, float]:
    """Calls ``state = step(state)`` once (compilation included), then ``repeats`` times.

    Returns the final state, the first call's seconds and the median of the
    other calls' seconds; every call is waited for (``block_until_ready``).
    """
    start = time.perf_counter()
    state = jax.block_until_ready(step(state))
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state = jax.block_until_ready(step(state))
        times.append(time.perf_counter() - start)
    return state, first_s, statistics.median(times)
