"""Where metrics go: TensorBoard event files, ``metrics.jsonl`` and a progress bar (from process 0 only)."""

from __future__ import annotations

import json
import math
import os
from typing import Mapping

from tensorboardX import SummaryWriter
from tqdm import tqdm


class RunLogger:
    """TensorBoard scalars, one JSON line per logged update, and a tqdm bar over environment steps."""

    def __init__(self, run_dir: str, total_steps: int, initial_steps: int = 0, progress: bool = True):
        self.writer = SummaryWriter(os.path.join(run_dir, "tb"))
        self.jsonl = open(os.path.join(run_dir, "metrics.jsonl"), "a")
        self.bar = tqdm(total=total_steps, initial=initial_steps, unit="step", unit_scale=True,
                        disable=not progress, dynamic_ncols=True)
        self.last_win_rate = math.nan
        self.last_return = math.nan

    def log(self, env_steps: int, metrics: Mapping[str, float], steps_per_s: float) -> None:
        for name, value in metrics.items():
            if math.isfinite(value):
                self.writer.add_scalar(name, value, env_steps)
        self.writer.add_scalar("perf/env_steps_per_s", steps_per_s, env_steps)
        record = {"env_steps": env_steps, "perf/env_steps_per_s": steps_per_s}
        record.update({k: v for k, v in metrics.items() if math.isfinite(v)})
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if math.isfinite(metrics.get("episode/win_rate", math.nan)):
            self.last_win_rate = metrics["episode/win_rate"]
        if math.isfinite(metrics.get("episode/return", math.nan)):
            self.last_return = metrics["episode/return"]
        self.bar.set_postfix(sps=f"{steps_per_s:,.0f}", win=f"{self.last_win_rate:.2f}",
                             ret=f"{self.last_return:.2f}", refresh=False)

    def advance(self, env_steps: int) -> None:
        self.bar.update(env_steps)

    def log_eval(self, env_steps: int, results: Mapping[str, float]) -> None:
        for name, value in results.items():
            self.writer.add_scalar(f"eval/{name}", value, env_steps)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
        self.jsonl.close()


class NullLogger:
    """``RunLogger``'s interface writing nothing: the other processes of a multi-process run (process 0 logs)."""

    def log(self, env_steps: int, metrics: Mapping[str, float], steps_per_s: float) -> None:
        pass

    def advance(self, env_steps: int) -> None:
        pass

    def log_eval(self, env_steps: int, results: Mapping[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def write_json_atomic(path: str, payload: Mapping) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
