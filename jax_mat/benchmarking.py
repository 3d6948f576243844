"""What the ``scripts/bench_*.py`` benchmarks share: the trainer a config names, and timing jitted steps."""

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
    from jax_mat.envs.registry import make_env_from_config
    from jax_mat.networks.registry import make_policy
    from jax_mat.training.runner import Trainer

    cfg = config_lib.load_config(name, overrides)
    env = make_env_from_config(cfg.env)
    return cfg, Trainer(cfg, env, make_policy(env.spec, cfg.algo))


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
