"""Network throughput: autoregressive acting and one PPO minibatch update, jitted, on random data.

Usage:
  python scripts/bench_network.py [--algo mat] [--cases 8 256] [--repeats 5]
                                  [--reference ../shared/benchmarks/official_mat_cpu.jsonl]

stdout carries one JSON object per case and nothing else, with exactly the fields
``n_agent, obs_dim, action_dim, n_envs, minibatch, act_s, act_agent_steps_per_s, update_s,
update_samples_per_s`` (the layout of the official PyTorch figures in ``--reference``).
Progress and, at the end, a table of jax_mat against the reference (throughput ratios
jax/torch) go to stderr, so ``python scripts/bench_network.py > out.jsonl`` keeps the JSON clean.

* ``act``: ``policy.act`` (autoregressive sampling over agents) for ``n_envs`` environments at
  once; ``act_agent_steps_per_s = n_envs * n_agent / act_s``.
* ``update``: one PPO minibatch step on ``minibatch`` samples of all agents: ``policy.evaluate``,
  ``ppo_loss``, backward, global-norm clip 10, Adam(5e-4, eps 1e-5);
  ``update_samples_per_s = minibatch * n_agent / update_s``.

Both are jitted and timed after compilation (one warm-up call); each figure is the median of
``--repeats`` calls, each ended by ``jax.block_until_ready``. Discrete availability masks are all
ones except ~25% random zeros, with action 0 always available. The network is MAT's SMAC default:
1 block, 64 wide, 1 head.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jax_mat.algos.ppo import LossConfig, ppo_loss
from jax_mat.envs.base import EnvSpec
from jax_mat.networks.mat import MATConfig, MATPolicy
from jax_mat.networks.policy import Policy

# (n_agent, obs_dim, action_dim, n_envs, minibatch): 3m, 3s5z and 25m sized, then two large synthetic ones.
CASES = [
    (3, 75, 9, 32, 3200),
    (8, 205, 13, 32, 3200),
    (25, 647, 31, 32, 800),
    (64, 64, 16, 32, 256),
    (256, 64, 16, 32, 256),
]
FIELDS = ("n_agent", "obs_dim", "action_dim", "n_envs", "minibatch",
          "act_s", "act_agent_steps_per_s", "update_s", "update_samples_per_s")
NETWORK = dict(n_block=1, n_embd=64, n_head=1)
DEFAULT_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "benchmarks",
                                 "official_mat_cpu.jsonl")

# Algorithm name -> policy for an environment spec; a new network adds one line here.
ALGOS: dict[str, Callable[[EnvSpec], Policy]] = {
    "mat": lambda spec: MATPolicy(spec, MATConfig(**NETWORK)),
    "mat_dec": lambda spec: MATPolicy(spec, MATConfig(**NETWORK, dec_actor=True)),
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


def make_update(policy: Policy, optimizer: optax.GradientTransformation, config: LossConfig):
    """Jitted ``(params, opt_state, batch) -> (params, opt_state, loss)``: one PPO minibatch step."""

    def loss_fn(params, batch):
        logp, entropy, values = policy.evaluate(params, batch["obs"], batch["actions"], batch["avail"])
        loss, _ = ppo_loss(logp, entropy, values, batch["old_logp"], batch["advantages"], batch["value_preds"],
                           batch["value_targets"], batch["active"], config)
        return loss

    @jax.jit
    def update(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return update


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one untimed warm-up (compilation)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_case(algo: str, case: tuple[int, ...], repeats: int) -> dict:
    n_agent, obs_dim, action_dim, n_envs, minibatch = case
    spec = EnvSpec(n_agents=n_agent, obs_dim=obs_dim, state_dim=0, action_dim=action_dim, discrete=True,
                   max_episode_steps=0)
    policy = ALGOS[algo](spec)
    key = jax.random.PRNGKey(0)
    params = policy.init(key)

    act = jax.jit(policy.act, static_argnums=4)
    rollout = random_batch(spec, n_envs, jax.random.PRNGKey(1))
    act_keys = iter(jax.random.split(jax.random.PRNGKey(2), repeats + 1))
    act_s = median_time(lambda: act(params, rollout["obs"], rollout["avail"], next(act_keys), False), repeats)

    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(5e-4, eps=1e-5))
    update = make_update(policy, optimizer, LossConfig())
    batch = random_batch(spec, minibatch, jax.random.PRNGKey(3))
    state = [params, optimizer.init(params)]

    def one_update():
        state[0], state[1], loss = update(state[0], state[1], batch)
        return loss

    update_s = median_time(one_update, repeats)
    return {
        "n_agent": n_agent, "obs_dim": obs_dim, "action_dim": action_dim, "n_envs": n_envs, "minibatch": minibatch,
        "act_s": act_s, "act_agent_steps_per_s": n_envs * n_agent / act_s,
        "update_s": update_s, "update_samples_per_s": minibatch * n_agent / update_s,
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="mat", choices=sorted(ALGOS))
    parser.add_argument("--cases", nargs="+", type=int, metavar="N_AGENT",
                        help=f"agent counts of the cases to run (default: all of {[c[0] for c in CASES]})")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (the median is kept)")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                        help="JSON lines with the same fields to compare against (missing file: no comparison)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    known = [c[0] for c in CASES]
    unknown = sorted(set(args.cases or []) - set(known))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known agent counts: {known}")
    cases = [c for c in CASES if args.cases is None or c[0] in args.cases]

    print(f"algo={args.algo} backend={jax.default_backend()} devices={jax.devices()} repeats={args.repeats}",
          file=sys.stderr)
    results = []
    for case in cases:
        row = bench_case(args.algo, case, args.repeats)
        results.append(row)
        print(json.dumps(row), flush=True)
    reference = load_reference(args.reference)
    if reference:
        print(f"\n{args.algo} vs {os.path.normpath(args.reference)} (ratios: jax / torch throughput)\n"
              + comparison_table(results, reference), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
