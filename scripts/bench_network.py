"""Network throughput: autoregressive acting and one PPO minibatch update, jitted, on random data.

Usage:
  python scripts/bench_network.py [--algo mat] [--cases 8 256] [--repeats 5] [--warmup-s 0.3]
                                  [--micro-batch-tokens 0] [--reference ../shared/benchmarks/official_mat_cpu.jsonl]
  python scripts/bench_network.py --algo marwkv --compare-with mat --cases 64 256 1024 4096 --envs 8 --minibatch 8

stdout carries one JSON object per case and network and nothing else, with the fields
``n_agent, obs_dim, action_dim, n_envs, minibatch, act_s, act_agent_steps_per_s, update_s,
update_samples_per_s`` (the layout of the official PyTorch figures in ``--reference``) plus
``algo``, the per-agent costs ``act_us_per_agent_step`` (``act_s / (n_envs * n_agent)``) and
``update_us_per_agent_sample`` (``update_s / (minibatch * n_agent)``), and the peak memory of each
compiled program, ``act_peak_bytes`` and ``update_peak_bytes``: XLA's ``memory_analysis()`` of the
executable, argument + output + temporary buffers less the aliased ones (what the program needs
at once, on any backend; not the process's resident memory), and the seconds each took to
compile (``act_compile_s``, ``update_compile_s``).
Progress and, at the end, a table of jax_mat against the reference (throughput ratios
jax/torch) go to stderr, so ``python scripts/bench_network.py > out.jsonl`` keeps the JSON clean.
``scripts/plot_agent_scaling.py`` draws time and memory against the number of agents from these lines.

* ``act``: ``policy.act`` (autoregressive sampling over agents) for ``n_envs`` environments at
  once; ``act_agent_steps_per_s = n_envs * n_agent / act_s``.
* ``update``: one PPO minibatch step on ``minibatch`` samples of all agents: ``policy.evaluate``,
  ``ppo_loss``, backward, global-norm clip 10, Adam(5e-4, eps 1e-5);
  ``update_samples_per_s = minibatch * n_agent / update_s``. On a CPU the update differentiates the
  minibatch in micro-batches of ``--micro-batch-tokens`` agent-tokens, the same gradient, as the trainer does.

Both are jitted and timed after compilation: the first call compiles, calls for ``--warmup-s``
seconds (at least two) follow untimed, then each figure is the median of ``--repeats`` calls, each
ended by ``jax.block_until_ready``. With ``--compare-with`` the two networks' calls alternate
(one timed act of each per round, then the same for the update), so both see the same machine load. Discrete availability masks are all ones except ~25% random
zeros, with action 0 always available. The network is MAT's SMAC default: 1 block, 64 wide, 1 head.
``ALGOS`` maps ``--algo`` to a policy; a new network adds one entry there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jax_mat.algos.ppo import LossConfig, accumulated_loss_and_grad, micro_batch_rows, ppo_loss
from jax_mat.benchmarking import peak_bytes
from jax_mat.envs.base import EnvSpec
from jax_mat.networks.marwkv import MARWKVConfig, MARWKVPolicy
from jax_mat.networks.mat import MATConfig, MATPolicy
from jax_mat.networks.policy import Policy
from jax_mat.algos.learner import grad_accumulation_tokens

# (n_agent, obs_dim, action_dim, n_envs, minibatch): 3m, 3s5z and 25m sized, then synthetic ones up to 4,096
# agents (the last two at a small batch, which --envs / --minibatch can set for every case).
CASES = [
    (3, 75, 9, 32, 3200),
    (8, 205, 13, 32, 3200),
    (25, 647, 31, 32, 800),
    (64, 64, 16, 32, 256),
    (256, 64, 16, 32, 256),
    (1024, 64, 16, 8, 8),
    (4096, 64, 16, 8, 8),
]
DEFAULT_CASES = (3, 8, 25, 64, 256)  # the 1,024- and 4,096-agent cases take minutes each: asked for by --cases
FIELDS = ("n_agent", "obs_dim", "action_dim", "n_envs", "minibatch",
          "act_s", "act_agent_steps_per_s", "update_s", "update_samples_per_s")
NETWORK = dict(n_block=1, n_embd=64, n_head=1)
DEFAULT_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "benchmarks",
                                 "official_mat_cpu.jsonl")

# Algorithm name -> policy for an environment spec; a new network adds one line here.
ALGOS: dict[str, Callable[[EnvSpec], Policy]] = {
    "mat": lambda spec: MATPolicy(spec, MATConfig(**NETWORK)),
    "mat_dec": lambda spec: MATPolicy(spec, MATConfig(**NETWORK, dec_actor=True)),
    "marwkv": lambda spec: MARWKVPolicy(spec, MARWKVConfig(version=4, **NETWORK)),
    # MARWKV with act encoding every agent before decoding (no streamed encoder): the A/B of docs/benchmarks.md.
    "marwkv_onepass": lambda spec: MARWKVPolicy(spec, MARWKVConfig(version=4, act_segment=0, **NETWORK)),
    "mat_rwkv": lambda spec: MARWKVPolicy(spec, MARWKVConfig(version=4, hybrid=True, **NETWORK)),
}


def random_batch(spec: EnvSpec, batch: int, key: jax.Array) -> dict[str, jax.Array]:
    """Observations, avail masks, actions and PPO-loss inputs for ``batch`` samples, ``[batch, N, ...]``."""
    keys = jax.random.split(key, 8)
    n, a = spec.n_agents, spec.action_dim
    obs = jax.random.normal(keys[0], (batch, n, spec.obs_dim))
    if spec.discrete:
        avail = (jax.random.uniform(keys[1], (batch, n, a)) > 0.25).astype(jnp.float32).at[..., 0].set(1.0)
        logits = jnp.where(avail > 0, 0.0, -jnp.inf)
        actions = jax.random.categorical(keys[2], logits).astype(jnp.int32)
    else:
        avail = None
        actions = jax.random.normal(keys[2], (batch, n, a))
    k = 1 if spec.discrete else a
    return {
        "obs": obs,
        "avail": avail,
        "actions": actions,
        "old_logp": jax.random.normal(keys[3], (batch, n, k)) - 2.0,
        "advantages": jax.random.normal(keys[4], (batch, n)),
        "value_preds": jax.random.normal(keys[5], (batch, n)),
        "value_targets": jax.random.normal(keys[6], (batch, n)),
        "active": jnp.ones((batch, n)),
    }


def make_update(policy: Policy, optimizer: optax.GradientTransformation, config: LossConfig, micro_rows: int = 0):
    """Jitted ``(params, opt_state, batch) -> (params, opt_state, loss)``: one PPO minibatch step.

    ``micro_rows > 0`` accumulates the same gradient over micro-batches of that many samples
    (``ppo.accumulated_loss_and_grad``, as the trainer does on a CPU).
    """

    def loss_fn(params, batch):
        logp, entropy, values = policy.evaluate(params, batch["obs"], batch["actions"], batch["avail"])
        return ppo_loss(logp, entropy, values, batch["old_logp"], batch["advantages"], batch["value_preds"],
                        batch["value_targets"], batch["active"], config)

    @jax.jit
    def update(params, opt_state, batch):
        (loss, _), grads = accumulated_loss_and_grad(loss_fn, params, batch, config, micro_rows)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return update


def median_times(fns: dict[str, Callable[[], object]], repeats: int, warmup_s: float) -> dict[str, float]:
    """Median wall time of each ``fns[name]`` over ``repeats`` calls, the calls of all names interleaved.

    Untimed before them, for each function: the first call (compilation, unless
    compiled ahead), then calls until ``warmup_s`` seconds have passed (at least two): the first few
    calls of a fresh executable run slower than the rest. Then ``repeats``
    rounds of one timed call per function, so that on a shared machine a
    change of load falls on every function alike.
    """
    for fn in fns.values():
        jax.block_until_ready(fn())
        start, calls = time.perf_counter(), 0
        while calls < 2 or time.perf_counter() - start < warmup_s:
            jax.block_until_ready(fn())
            calls += 1
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_case(algos: list[str], case: tuple[int, ...], repeats: int, warmup_s: float = 0.3,
               micro_tokens: int = 0) -> list[dict]:
    """One result row per algorithm; the algorithms' acts are timed interleaved, then their updates."""
    n_agent, obs_dim, action_dim, n_envs, minibatch = case
    spec = EnvSpec(n_agents=n_agent, obs_dim=obs_dim, state_dim=0, action_dim=action_dim, discrete=True,
                   max_episode_steps=0)
    rollout = random_batch(spec, n_envs, jax.random.PRNGKey(1))
    batch = random_batch(spec, minibatch, jax.random.PRNGKey(3))
    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(5e-4, eps=1e-5))
    acts, updates, memory = {}, {}, {}
    for algo in algos:
        policy = ALGOS[algo](spec)
        params = policy.init(jax.random.PRNGKey(0))
        # Compiled ahead of time, once: the executable is both timed and asked for its memory.
        start = time.perf_counter()
        act = jax.jit(policy.act, static_argnums=4).lower(
            params, rollout["obs"], rollout["avail"], jax.random.PRNGKey(2), False).compile()
        act_compile_s = time.perf_counter() - start
        # A fresh key per call, made before timing (indexing a device array is itself a dispatch).
        act_keys = itertools.cycle(list(jax.random.split(jax.random.PRNGKey(2), 64)))
        acts[algo] = lambda act=act, params=params, keys=act_keys: act(
            params, rollout["obs"], rollout["avail"], next(keys))
        opt_state = optimizer.init(params)
        update = make_update(policy, optimizer, LossConfig(), micro_batch_rows(minibatch, n_agent, micro_tokens))
        start = time.perf_counter()
        update = update.lower(params, opt_state, batch).compile()
        memory[algo] = (peak_bytes(act), peak_bytes(update), act_compile_s, time.perf_counter() - start)
        state = [params, opt_state]

        def one_update(update=update, state=state):
            state[0], state[1], loss = update(state[0], state[1], batch)
            return loss

        updates[algo] = one_update
    act_s = median_times(acts, repeats, warmup_s)
    update_s = median_times(updates, repeats, warmup_s)
    return [{
        "n_agent": n_agent, "obs_dim": obs_dim, "action_dim": action_dim, "n_envs": n_envs, "minibatch": minibatch,
        "act_s": act_s[algo], "act_agent_steps_per_s": n_envs * n_agent / act_s[algo],
        "update_s": update_s[algo], "update_samples_per_s": minibatch * n_agent / update_s[algo],
        "algo": algo,
        "act_us_per_agent_step": 1e6 * act_s[algo] / (n_envs * n_agent),
        "update_us_per_agent_sample": 1e6 * update_s[algo] / (minibatch * n_agent),
        "act_peak_bytes": memory[algo][0], "update_peak_bytes": memory[algo][1],
        "act_compile_s": memory[algo][2], "update_compile_s": memory[algo][3],
    } for algo in algos]


def load_reference(path: str) -> dict[tuple[int, ...], dict]:
    if not path or not os.path.exists(path):
        return {}
    rows = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows[tuple(row[k] for k in FIELDS[:5])] = row
    return rows


def comparison_table(results: list[dict], reference: dict[tuple[int, ...], dict]) -> str:
    """A Markdown table of jax_mat and reference throughput with jax/torch ratios."""
    lines = [
        "| agents | obs | actions | envs | minibatch | act agent-steps/s jax | torch | ratio "
        "| update samples/s jax | torch | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ref = reference.get(tuple(r[k] for k in FIELDS[:5]))
        act_ref = f"{ref['act_agent_steps_per_s']:,.0f}" if ref else "-"
        upd_ref = f"{ref['update_samples_per_s']:,.0f}" if ref else "-"
        act_ratio = f"{r['act_agent_steps_per_s'] / ref['act_agent_steps_per_s']:.1f}x" if ref else "-"
        upd_ratio = f"{r['update_samples_per_s'] / ref['update_samples_per_s']:.2f}x" if ref else "-"
        lines.append(
            f"| {r['n_agent']} | {r['obs_dim']} | {r['action_dim']} | {r['n_envs']} | {r['minibatch']} "
            f"| {r['act_agent_steps_per_s']:,.0f} | {act_ref} | {act_ratio} "
            f"| {r['update_samples_per_s']:,.0f} | {upd_ref} | {upd_ratio} |"
        )
    return "\n".join(lines)


def side_by_side(name: str, results: list[dict], other_name: str, others: list[dict]) -> str:
    lines = [
        f"| agents | act {name} | act {other_name} | ratio | update {name} | update {other_name} | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, o in zip(results, others):
        lines.append(
            f"| {r['n_agent']} | {r['act_agent_steps_per_s']:,.0f} | {o['act_agent_steps_per_s']:,.0f} "
            f"| {r['act_agent_steps_per_s'] / o['act_agent_steps_per_s']:.2f}x "
            f"| {r['update_samples_per_s']:,.0f} | {o['update_samples_per_s']:,.0f} "
            f"| {r['update_samples_per_s'] / o['update_samples_per_s']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="mat", choices=sorted(ALGOS))
    parser.add_argument("--cases", nargs="+", type=int, metavar="N_AGENT",
                        help=f"agent counts of the cases to run, of {[c[0] for c in CASES]} "
                             f"(default: {list(DEFAULT_CASES)})")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (the median is kept)")
    parser.add_argument("--warmup-s", type=float, default=0.3,
                        help="untimed calls for at least this long (and at least 2) after compiling, before timing")
    parser.add_argument("--micro-batch-tokens", type=int, default=grad_accumulation_tokens(),
                        help="update: accumulate the gradient over micro-batches of at most this many agent-tokens, "
                             "as the trainer does (default: the trainer's choice on this backend; 0: one pass)")
    parser.add_argument("--compare-with", choices=sorted(ALGOS), default=None,
                        help="also time this network on each case, call by call alternating with --algo, and "
                             "print both side by side on stderr")
    parser.add_argument("--envs", type=int, help="environments per act call in every case (default: the case's)")
    parser.add_argument("--minibatch", type=int, help="samples per update in every case (default: the case's)")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                        help="JSON lines with the same fields to compare against (missing file: no comparison)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.warmup_s < 0 or args.micro_batch_tokens < 0:
        parser.error("--warmup-s and --micro-batch-tokens must be >= 0")
    if (args.envs is not None and args.envs < 1) or (args.minibatch is not None and args.minibatch < 1):
        parser.error("--envs and --minibatch must be >= 1")
    known = [c[0] for c in CASES]
    unknown = sorted(set(args.cases or []) - set(known))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known agent counts: {known}")
    cases = [c for c in CASES if c[0] in (args.cases or DEFAULT_CASES)]
    cases = [(n, obs, act, args.envs or envs, args.minibatch or mb) for n, obs, act, envs, mb in cases]

    print(f"algo={args.algo} backend={jax.default_backend()} repeats={args.repeats} warmup_s={args.warmup_s} "
          f"micro_batch_tokens={args.micro_batch_tokens}", file=sys.stderr)
    results, others = [], []
    algos = [args.algo] + ([args.compare_with] if args.compare_with else [])
    for case in cases:
        rows = bench_case(algos, case, args.repeats, args.warmup_s, args.micro_batch_tokens)
        results.append(rows[0])
        others.extend(rows[1:])
        for row in rows:
            print(json.dumps(row), flush=True)
    if others:
        print(f"\n{args.algo} vs {args.compare_with}, measured interleaved in this run (throughput ratios)\n"
              + side_by_side(args.algo, results, args.compare_with, others), file=sys.stderr)
    reference = load_reference(args.reference)
    if reference:
        note = "" if args.algo == "mat" else f" (the reference is MAT's; {args.algo} is compared with it for scale only)"
        print(f"\n{args.algo} vs {os.path.normpath(args.reference)} (ratios: jax / torch throughput){note}\n"
              + comparison_table(results, reference), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
