"""The layout of a run directory: the one place that names its files and tells a run from anything else.

A run directory (``runs/<algo>-<env>-<map>-<time>/`` unless ``--run-dir`` names it) holds::

    config.yaml          the resolved config, with the package versions (what makes a folder a run)
    metrics.jsonl        one line per logged update (and ``eval/`` lines)
    tb/                  TensorBoard: one run, or ``seed_<k>/`` and ``aggregate/`` for a sweep
    checkpoints/<n>/     orbax checkpoints of the whole ``RunnerState`` after update ``n``
    evaluations.jsonl    every periodic evaluation, each episode's return and outcome
    best/<n>/, best.json each seed's best-evaluated parameters and their scores
    eval.json            the final evaluation and the absolute metric (present once the run finished)
    marl_eval.json       the run in marl-eval's format

Every command and script asks this module for those paths; nothing else joins their names.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
EVALUATIONS_FILE = "evaluations.jsonl"
BEST_DIR = "best"
BEST_FILE = "best.json"
EVAL_FILE = "eval.json"
MARL_EVAL_FILE = "marl_eval.json"
RUNS_ROOT = "runs"  # where a run without --run-dir goes


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (which need not exist yet)."""

    path: str

    def __post_init__(self):
        object.__setattr__(self, "path", os.fspath(self.path))

    def _join(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def config(self) -> str:
        return self._join(CONFIG_FILE)

    @property
    def metrics(self) -> str:
        return self._join(METRICS_FILE)

    @property
    def tensorboard(self) -> str:
        return self._join(TENSORBOARD_DIR)

    @property
    def checkpoints(self) -> str:
        return self._join(CHECKPOINT_DIR)

    def checkpoint(self, step: int) -> str:
        """``checkpoints/<step>``."""
        return os.path.join(self.checkpoints, str(step))

    @property
    def evaluations(self) -> str:
        return self._join(EVALUATIONS_FILE)

    @property
    def best(self) -> str:
        return self._join(BEST_DIR)

    @property
    def best_scores(self) -> str:
        return self._join(BEST_FILE)

    @property
    def eval(self) -> str:
        return self._join(EVAL_FILE)

    @property
    def marl_eval(self) -> str:
        return self._join(MARL_EVAL_FILE)

    def is_run(self) -> bool:
        """Whether a jax_mat run lives here: its ``config.yaml`` is written before anything else."""
        return os.path.isfile(self.config)

    def is_finished(self) -> bool:
        """Whether the run finished: ``eval.json`` is written last."""
        return os.path.isfile(self.eval)


def require_run(path: str | os.PathLike, prefix: str = "") -> RunDir:
    """``path`` as a ``RunDir``, or ``ValueError`` saying why it is not one (``prefix`` names the option)."""
    run = RunDir(path)
    lead = f"{prefix}: " if prefix else ""
    if not os.path.isdir(run.path):
        raise ValueError(f"{lead}no run directory {run.path}")
    if not run.is_run():
        raise ValueError(f"{lead}{run.path} is not a jax_mat run directory (no {CONFIG_FILE})")
    return run


def require_new(path: str | os.PathLike) -> RunDir:
    """``path`` for a new run, or ``ValueError`` when a run already lives there."""
    run = RunDir(path)
    if run.is_run():
        raise ValueError(f"{run.path} already holds a run; use --resume {run.path} or another --run-dir")
    return run


def default_path(run_name: str) -> str:
    """``runs/<run_name>-<YYYYmmdd-HHMMSS>``: where a run goes without ``--run-dir``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(RUNS_ROOT, f"{run_name}-{stamp}")


def split_checkpoint_path(path: str | os.PathLike) -> tuple[RunDir, int | None]:
    """What a checkpoint argument names: ``RUN_DIR``, ``RUN_DIR/checkpoints`` or ``RUN_DIR/checkpoints/<n>``,
    as the run and the step (None: the run's newest). Nothing is read."""
    path = os.path.abspath(os.fspath(path))
    base, parent = os.path.basename(path), os.path.dirname(path)
    if base.isdigit() and os.path.basename(parent) == CHECKPOINT_DIR:
        return RunDir(os.path.dirname(parent)), int(base)
    if base == CHECKPOINT_DIR:
        return RunDir(parent), None
    return RunDir(path), None
