"""What the ``scripts/bench_*.py`` benchmarks share: the trainer a config names, timing jitted steps, and memory."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax


def make_trainer(name: str | None, overrides: list[str]):
    """``(config, Trainer)`` as ``python -m jax_mat.train NAME OVERRIDES`` builds them.

    Raises ``ValueError`` naming the problem for a bad config, before anything is compiled.
    """
    from jax_mat import config as config_lib
    from jax_mat.training.runner import make_trainer

    cfg = config_lib.load_config(name, overrides)
    return cfg, make_trainer(cfg)


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


def peak_bytes(compiled) -> int:
    """What a compiled program holds at once: arguments + outputs + temporaries, less the buffers aliased between
    arguments and outputs (XLA's ``memory_analysis()`` of the executable; any backend)."""
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def device_peak_bytes() -> int | None:
    """The first device's allocator peak over this process (GPUs, TPUs); ``None`` where the backend keeps none (CPU)."""
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
