#!/usr/bin/env python
"""Time and memory against the number of agents, from ``scripts/bench_network.py``'s JSON lines.

    python scripts/bench_network.py --algo marwkv --compare-with mat --cases 64 256 1024 4096 --envs 8 \\
        --minibatch 8 > scaling.jsonl
    python scripts/plot_agent_scaling.py scaling.jsonl --out docs/figures/agent_scaling_cpu.png

Left: ``act`` microseconds per agent-step and the update's microseconds per agent-sample; right: the peak memory of
each compiled program (``act_peak_bytes``, ``update_peak_bytes``), with a dotted line for memory linear in N from the
first point of ``--linear-from``'s act (MARWKV by default). stdout: the per-agent ratios at each N, where the act
curves cross, and the issue's two CPU targets (MARWKV act >= 3x MAT's at 1,024 agents; MARWKV act memory within
1.2x of linear from 256 to 4,096 agents), each marked met or not.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict


def load(path: str) -> dict[str, dict[int, dict]]:
    """``{algo: {n_agent: row}}`` (a later row for the same algorithm and N replaces an earlier one)."""
    rows: dict[str, dict[int, dict]] = defaultdict(dict)
    with open(path) as f:
        for line in f:
            if line.strip().startswith("{"):
                row = json.loads(line)
                rows[row["algo"]][row["n_agent"]] = row
    return rows


def crossing(ns: list[int], a: list[float], b: list[float]) -> float | None:
    """The N (log-interpolated) at which ``a`` first drops below ``b``; ``None`` if it never does in between."""
    for i in range(1, len(ns)):
        d0, d1 = math.log(a[i - 1] / b[i - 1]), math.log(a[i] / b[i])
        if d0 >= 0 > d1:
            f = d0 / (d0 - d1)
            return math.exp(math.log(ns[i - 1]) + f * (math.log(ns[i]) - math.log(ns[i - 1])))
    return None


def report(rows: dict[str, dict[int, dict]], fast: str, slow: str) -> list[str]:
    ns = sorted(set(rows[fast]) & set(rows[slow]))
    lines = [f"| N | {fast} act us/agent-step | {slow} | {slow}/{fast} | {fast} update us/agent-sample | {slow} "
             f"| {fast} act MiB | {slow} act MiB |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in ns:
        f, s = rows[fast][n], rows[slow][n]
        lines.append(f"| {n:,} | {f['act_us_per_agent_step']:.2f} | {s['act_us_per_agent_step']:.2f} | "
                     f"{s['act_us_per_agent_step'] / f['act_us_per_agent_step']:.2f}x | "
                     f"{f['update_us_per_agent_sample']:.1f} | {s['update_us_per_agent_sample']:.1f} | "
                     f"{f['act_peak_bytes'] / 2**20:.1f} | {s['act_peak_bytes'] / 2**20:.1f} |")
    for what, key in (("act", "act_us_per_agent_step"), ("update", "update_us_per_agent_sample")):
        n = crossing(ns, [rows[fast][n][key] for n in ns], [rows[slow][n][key] for n in ns])
        fast_first = rows[fast][ns[0]][key] < rows[slow][ns[0]][key]
        if n is not None:
            lines.append(f"{what}: {fast} becomes cheaper per agent than {slow} at about N = {n:,.0f}")
        elif fast_first:
            lines.append(f"{what}: {fast} is cheaper per agent than {slow} at every N measured")
        else:
            lines.append(f"{what}: {slow} stays cheaper per agent at every N measured")
    if 1024 in ns:
        ratio = rows[slow][1024]["act_us_per_agent_step"] / rows[fast][1024]["act_us_per_agent_step"]
        lines.append(f"target: {fast} act >= 3x {slow}'s at 1,024 agents: {ratio:.2f}x, {'met' if ratio >= 3 else 'not met'}")
    if 256 in rows[fast] and 4096 in rows[fast]:
        ratio = rows[fast][4096]["act_peak_bytes"] / (16 * rows[fast][256]["act_peak_bytes"])
        lines.append(f"target: {fast} act peak memory within 1.2x of linear from 256 to 4,096 agents: "
                     f"{ratio:.2f}x of linear, {'met' if ratio <= 1.2 else 'not met'}")
    return lines


def plot(rows: dict[str, dict[int, dict]], path: str, title: str, linear_from: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10.5, 4.2), dpi=120)
    colours = dict(zip(sorted(rows), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for algo, by_n in sorted(rows.items()):
        ns = sorted(by_n)
        c = colours[algo]
        ax_t.plot(ns, [by_n[n]["act_us_per_agent_step"] for n in ns], "o-", color=c, label=f"{algo} act")
        ax_t.plot(ns, [by_n[n]["update_us_per_agent_sample"] for n in ns], "s--", color=c, label=f"{algo} update")
        ax_m.plot(ns, [by_n[n]["act_peak_bytes"] / 2**20 for n in ns], "o-", color=c, label=f"{algo} act")
        ax_m.plot(ns, [by_n[n]["update_peak_bytes"] / 2**20 for n in ns], "s--", color=c, label=f"{algo} update")
    if linear_from in rows:
        by_n = rows[linear_from]
        ns = sorted(by_n)
        base = by_n[ns[0]]["act_peak_bytes"] / 2**20 / ns[0]
        ax_m.plot(ns, [base * n for n in ns], ":", color="grey", label=f"linear from {linear_from} act at N={ns[0]}")
    for ax, label in ((ax_t, "microseconds per agent-step (act) / agent-sample (update)"),
                      (ax_m, "peak memory of the compiled program (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("agents N")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jsonl", help="bench_network.py's stdout")
    parser.add_argument("--out", help="the PNG to write")
    parser.add_argument("--fast", default="marwkv", help="the recurrent network (default marwkv)")
    parser.add_argument("--slow", default="mat", help="the attention network (default mat)")
    parser.add_argument("--linear-from", default="marwkv", help="whose act memory the linear guide starts from")
    parser.add_argument("--title", default="per-agent cost and memory against the number of agents")
    args = parser.parse_args(argv)
    rows = load(args.jsonl)
    missing = [a for a in (args.fast, args.slow) if a not in rows]
    if missing:
        print(f"error: no rows for {', '.join(missing)} in {args.jsonl}; found: {', '.join(sorted(rows)) or 'none'}",
              file=sys.stderr)
        return 2
    print("\n".join(report(rows, args.fast, args.slow)))
    if args.out:
        plot(rows, args.out, args.title, args.linear_from)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
