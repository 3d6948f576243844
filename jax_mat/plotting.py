"""Learning curves and score tables from run directories (TensorBoard event files and ``eval.json``).

A run directory written by ``python -m jax_mat.train`` holds its scalars in
``tb/`` (one seed) or ``tb/seed_<k>/`` (a sweep). ``plot_learning_curves``
draws one line per group of runs (an algorithm, say): the mean over every
seed of every run in the group, each seed's curve first smoothed by a moving
average and interpolated onto the union of the logged steps, with a band of
one standard deviation over seeds. ``score_table`` gives each group's final
greedy evaluation or absolute metric (``eval.json``) as a Markdown table: the
mean over seeds with its 95% bootstrap interval, and the IQM.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping, Sequence

import numpy as np

from jax_mat import statistics
from jax_mat.training.run_dir import EVAL_FILE, TENSORBOARD_DIR, RunDir

Curve = tuple[np.ndarray, np.ndarray]  # (env steps [T], values [T])


def read_scalars(event_dir: str) -> dict[str, Curve]:
    """Every scalar tag in the TensorBoard event files of ``event_dir``, sorted by step.

    Raises ``ValueError`` when the folder holds no event file.
    """
    from tensorboard.backend.event_processing import event_accumulator

    if not os.path.isdir(event_dir) or not any(f.startswith("events.out.tfevents") for f in os.listdir(event_dir)):
        raise ValueError(f"no TensorBoard event files in {event_dir}")
    acc = event_accumulator.EventAccumulator(event_dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    curves = {}
    for tag in acc.Tags()["scalars"]:
        events = sorted(acc.Scalars(tag), key=lambda e: e.step)
        curves[tag] = (np.asarray([e.step for e in events], np.float64), np.asarray([e.value for e in events]))
    return curves


def seed_event_dirs(run_dir: str) -> list[str]:
    """The event folders of a run's seeds: ``tb/seed_<k>`` of a sweep, else ``tb``."""
    tb = RunDir(run_dir).tensorboard
    if not os.path.isdir(tb):
        raise ValueError(f"{run_dir} is not a jax_mat run directory (no {TENSORBOARD_DIR}/)")
    seeds = sorted((d for d in os.listdir(tb) if d.startswith("seed_")), key=lambda d: int(d.split("_")[1]))
    return [os.path.join(tb, d) for d in seeds] or [tb]


def run_curves(run_dir: str, tag: str) -> list[Curve]:
    """``tag``'s curve for each seed of a run; ``ValueError`` if a seed never logged it."""
    curves = []
    for event_dir in seed_event_dirs(run_dir):
        scalars = read_scalars(event_dir)
        if tag not in scalars:
            known = ", ".join(sorted(scalars))
            raise ValueError(f"{event_dir} has no scalar {tag!r}; it has: {known}")
        curves.append(scalars[tag])
    return curves


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over up to ``window`` points (the first points average fewer)."""
    if window <= 1:
        return values
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


def mean_and_spread(curves: Sequence[Curve], window: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps ``[G]`` (the union of all curves' steps), mean and standard deviation over the curves there.

    Each curve is smoothed, then linearly interpolated onto the grid within its
    own step range (NaN outside it, and left out of the statistics).
    """
    grid = np.unique(np.concatenate([steps for steps, _ in curves]))
    stacked = np.full((len(curves), grid.size), np.nan)
    for row, (steps, values) in enumerate(curves):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        stacked[row, inside] = np.interp(grid[inside], steps, moving_average(values, window))
    with np.errstate(invalid="ignore"):
        count = np.isfinite(stacked).sum(0)
        mean = np.nansum(stacked, 0) / np.maximum(count, 1)
        var = np.nansum((stacked - mean) ** 2, 0) / np.maximum(count, 1)
    mean[count == 0] = np.nan
    return grid, mean, np.sqrt(var)


def plot_learning_curves(
    groups: Mapping[str, Sequence[str]],
    tag: str,
    path: str,
    *,
    window: int = 10,
    title: str | None = None,
    ylabel: str | None = None,
) -> None:
    """Writes a PNG: one line per group (mean over all its runs' seeds) with a one-std band.

    Args:
      groups: ``{label: [run_dir, ...]}``.
      tag: the scalar to plot, e.g. ``episode/win_rate``, ``episode/return`` or ``eval/mean_return``.
      path: the PNG to write (written to a temporary file first, then renamed).
      window: moving-average window, in logged points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, run_dirs in groups.items():
        curves = [c for run_dir in run_dirs for c in run_curves(run_dir, tag)]
        steps, mean, std = mean_and_spread(curves, window)
        line, = ax.plot(steps, mean, label=f"{label} ({len(curves)} seed{'s' * (len(curves) != 1)})", lw=1.6)
        if len(curves) > 1:
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel or tag)
    ax.set_title(title or tag)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def eval_results(run_dir: str, absolute: bool = False) -> list[dict]:
    """The per-seed results in a run's ``eval.json``: the final greedy evaluation, or with ``absolute`` the
    absolute metric (each seed's best periodic evaluation replayed on 10x the episodes)."""
    path = RunDir(run_dir).eval
    if not os.path.isfile(path):
        raise ValueError(f"{run_dir} has no {EVAL_FILE} (the run has not finished)")
    with open(path) as f:
        results = json.load(f)
    if absolute:
        if "absolute" not in results:
            raise ValueError(f"{run_dir}'s eval.json has no absolute metric (a run from before jax_mat recorded it)")
        results = results["absolute"]
    return results.get("per_seed", [results])


def format_estimate(stats: Mapping[str, float], digits: int = 3) -> str:
    """``mean [ci_low, ci_high]`` (or the mean alone where one seed gives no interval)."""
    if not math.isfinite(stats["ci_low"]):
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} [{stats['ci_low']:.{digits}f}, {stats['ci_high']:.{digits}f}]"


def score_table(groups: Mapping[str, Sequence[str]], keys: Sequence[str] = ("win_rate", "mean_return"),
                absolute: bool = False) -> str:
    """A Markdown table of each group's evaluation over seeds: the mean with its 95% bootstrap interval
    (``jax_mat.statistics``; none with one seed) and the IQM. ``absolute``: the absolute metric instead of
    the final evaluation."""
    header = "| run | seeds | " + " | ".join(f"{k} (mean [95% CI]) | {k} (IQM)" for k in keys) + " |"
    lines = [header, "|" + "---|" * (2 + 2 * len(keys))]
    for label, run_dirs in groups.items():
        seeds = [r for run_dir in run_dirs for r in eval_results(run_dir, absolute)]
        cells = []
        for k in keys:
            stats = statistics.summary([float(s.get(k, math.nan)) for s in seeds])
            cells += [format_estimate(stats), f"{stats['iqm']:.3f}"]
        lines.append(f"| {label} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def score_report(groups: Mapping[str, Sequence[str]], keys: Sequence[str] = ("win_rate", "mean_return")) -> str:
    """The final evaluation's ``score_table`` and, where every run recorded it, the absolute metric's."""
    report = "Final evaluation (eval.json, greedy):\n\n" + score_table(groups, keys)
    try:
        absolute = score_table(groups, keys, absolute=True)
    except ValueError:
        return report
    return report + "\nAbsolute metric (each seed's best periodic evaluation on 10x the episodes):\n\n" + absolute
