"""Statistics over seeds and tasks, as the evaluation protocol of Gorsane et al. (2022) and rliable report them.

All of it is SciPy's: the interquartile mean is ``scipy.stats.trim_mean(x, 0.25)`` (the mean of the middle
half, ``floor(n / 4)`` values cut from each end), and confidence intervals are ``scipy.stats.bootstrap``'s
percentile intervals. Given one sample per task, SciPy resamples each sample on its own: that is the
stratified bootstrap (seeds resampled within each task) that rliable uses for aggregates over tasks.
NaN values (a seed where no episode finished, say) are left out.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, np.float64).ravel()
    return x[np.isfinite(x)]


def interquartile_mean(values: Sequence[float]) -> float:
    """The mean of the middle 50% of the finite ``values``; NaN if none."""
    x = _finite(values)
    return float(stats.trim_mean(x, 0.25)) if x.size else math.nan


def bootstrap_ci(samples: Sequence[Sequence[float]], statistic: Callable[..., float],
                 seed: int = 0) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of ``statistic(*samples)``, each sample resampled on its own
    (stratified when there are several). ``(nan, nan)`` when a sample has fewer than two finite values."""
    finite = [_finite(s) for s in samples]
    if any(s.size < 2 for s in finite):
        return math.nan, math.nan
    if all(np.all(s == s[0]) for s in finite):  # every resample is the same: a point interval
        value = float(statistic(*finite))
        return value, value
    result = stats.bootstrap(finite, statistic, n_resamples=N_RESAMPLES, confidence_level=CONFIDENCE,
                             method="percentile", vectorized=False, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summary(values: Sequence[float]) -> dict[str, float]:
    """``mean``, ``std`` (population), ``iqm`` and the 95% bootstrap interval of the mean (``ci_low``,
    ``ci_high``) of one task's per-seed ``values``."""
    x = _finite(values)
    if x.size == 0:
        return {k: math.nan for k in ("mean", "std", "iqm", "ci_low", "ci_high")}
    low, high = bootstrap_ci([x], np.mean)
    return {"mean": float(x.mean()), "std": float(x.std()), "iqm": interquartile_mean(x), "ci_low": low,
            "ci_high": high}


def aggregate_iqm(per_task: Sequence[Sequence[float]]) -> dict[str, float]:
    """The IQM over every seed of every task, with its stratified-bootstrap 95% interval."""
    tasks = [_finite(t) for t in per_task]
    pooled = np.concatenate(tasks) if tasks else np.zeros(0)
    iqm = lambda *samples: stats.trim_mean(np.concatenate(samples), 0.25)
    low, high = bootstrap_ci(tasks, iqm) if tasks else (math.nan, math.nan)
    return {"iqm": interquartile_mean(pooled), "ci_low": low, "ci_high": high, "runs": int(pooled.size)}
