"""Parity of jax_mat's networks with the official PyTorch implementations.

A fixture is an ``.npz`` in the layout of ``shared/fixtures/mat_reference``
(MAT) or ``shared/fixtures/marwkv_reference`` (MARWKV v4/v6; the family and
version are read off the parameter names):
upstream parameters under ``param/``, inputs (``obs``, ``avail``, ``actions``),
upstream outputs under ``out/``, PPO-loss inputs and scalars under ``loss/``
and gradients of the total loss under ``grad/``. ``compare_fixture`` rebuilds
the model from the fixture's own shapes, runs it, and returns one row per
quantity with its largest absolute error and whether it is within tolerance
(``|err| <= atol + rtol * |ref|`` elementwise).
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jax_mat.algos.ppo import LossConfig, ppo_loss
from jax_mat.envs.base import EnvSpec
from jax_mat.networks import torch_import
from jax_mat.networks.marwkv import MARWKVConfig, MARWKVPolicy
from jax_mat.networks.mat import MATConfig, MATPolicy

OUTPUT_TOL = (1e-5, 1e-4)  # atol, rtol
GRAD_TOL = (1e-4, 1e-4)
OUTPUTS = ("values", "obs_rep", "logp", "entropy", "det_actions", "det_logp")
LOSS_INPUTS = ("old_logp", "adv", "value_preds", "returns", "active")
LOSS_PARTS = ("total", "policy", "value", "entropy")


@dataclasses.dataclass(frozen=True)
class Row:
    quantity: str
    max_abs_err: float
    ok: bool


def _case_metadata(path: str) -> dict:
    """The fixture's entry in a ``cases.json`` beside it, if there is one."""
    cases = os.path.join(os.path.dirname(os.path.abspath(path)), "cases.json")
    if not os.path.exists(cases):
        return {}
    name = os.path.splitext(os.path.basename(path))[0]
    with open(cases) as f:
        return next((c for c in json.load(f) if c.get("name") == name), {})


def _required(data, key: str, name: str) -> np.ndarray:
    if key not in data:
        raise ValueError(f"{name} has no '{key}' array")
    return np.asarray(data[key])


def _compare(name: str, got, ref, tol) -> Row:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"{name}: jax_mat gives shape {got.shape}, the fixture has {ref.shape}")
    atol, rtol = tol
    err = np.abs(got - ref)
    return Row(name, float(err.max(initial=0.0)), bool(np.all(err <= atol + rtol * np.abs(ref))))


def _loss_config(meta: dict) -> LossConfig:
    cfg = meta.get("loss_config", {})
    return LossConfig(
        clip=cfg.get("clip", 0.05),
        huber_delta=cfg.get("huber_delta", 10.0),
        entropy_coef=cfg.get("entropy_coef", 0.01),
        value_loss_coef=cfg.get("value_loss_coef", 1.0),
    )


def _build(params_np: dict, obs: np.ndarray, n_head: int | None, meta: dict):
    shape = torch_import.infer_shape(params_np)
    n_agent = obs.shape[1]
    if obs.shape[2] != shape.obs_dim:
        raise ValueError(f"obs has {obs.shape[2]} features but the weights expect {shape.obs_dim}")
    spec = EnvSpec(n_agent, shape.obs_dim, 0, shape.action_dim, shape.discrete, 0)
    if shape.family == "marwkv" and not shape.hybrid:
        # The WKV head count is in the weights (v5/v6); v4 has none.
        config = MARWKVConfig(shape.version, shape.n_block, shape.n_embd, shape.n_head or 1)
        policy = MARWKVPolicy(spec, config)
    else:
        n_head = n_head or meta.get("n_head")
        if n_head is None:
            raise ValueError(
                "the head count is not in the weights: pass n_head (or keep cases.json beside the fixture)"
            )
        if shape.family == "marwkv":
            config = MARWKVConfig(shape.version, shape.n_block, shape.n_embd, int(n_head), hybrid=True)
            policy = MARWKVPolicy(spec, config)
        else:
            config = MATConfig(
                n_block=shape.n_block,
                n_embd=shape.n_embd,
                n_head=int(n_head),
                dec_actor=shape.dec_actor,
                share_actor=shape.share_actor,
            )
            policy = MATPolicy(spec, config)
    params = jax.tree.map(jnp.asarray, torch_import.torch_to_flax(params_np, config, shape.discrete, n_agent))
    return policy, params


def compare_fixture(path: str, n_head: int | None = None, compiler_options: dict | None = None) -> list[Row]:
    """Run jax_mat's MAT or MARWKV on a fixture file and compare every stored quantity.

    ``compiler_options`` go to ``jax.jit`` (the tests pass
    ``{"xla_backend_optimization_level": 0}``, which halves compilation on a CPU).
    """
    if not os.path.exists(path):
        raise ValueError(f"no such fixture: {path}")
    with np.load(path) as f:
        data = {k: f[k] for k in f.files}
    return compare_arrays(data, n_head=n_head, meta=_case_metadata(path), name=path, compiler_options=compiler_options)


def compare_arrays(
    data: dict,
    n_head: int | None = None,
    meta: dict | None = None,
    name: str = "fixture",
    compiler_options: dict | None = None,
) -> list[Row]:
    """Compare a fixture already in memory.

    The model rows (``out/*``) are always compared; the loss rows and the
    gradients when the fixture has its ``loss/`` section (all of it).
    """
    meta = meta or {}
    params_np = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
    if not params_np:
        raise ValueError(f"{name} has no 'param/<name>' arrays")
    obs = _required(data, "obs", name).astype(np.float32)
    if obs.ndim != 3:
        raise ValueError(f"{name}: obs must be [batch, agents, obs], got shape {obs.shape}")
    policy, params = _build(params_np, obs, n_head, meta)
    spec = policy.spec
    actions_raw = _required(data, "actions", name)
    if spec.discrete:
        actions = jnp.asarray(actions_raw[..., 0].astype(np.int32))
        avail = jnp.asarray(_required(data, "avail", name).astype(np.float32))
    else:
        actions, avail = jnp.asarray(actions_raw.astype(np.float32)), None
    obs = jnp.asarray(obs)
    refs = {q: _required(data, f"out/{q}", name) for q in OUTPUTS}
    with_loss = any(k.startswith(("loss/", "grad/")) for k in data)
    if with_loss:
        loss_in = {k: jnp.asarray(_required(data, f"loss/{k}", name)) for k in LOSS_INPUTS}
        loss_refs = {part: _required(data, f"loss/{part}", name) for part in LOSS_PARTS}
        loss_fn = _loss_fn(policy, obs, actions, avail, loss_in, _loss_config(meta))

    def run(p):
        """Every compared quantity in one program (one compilation)."""
        values, rep = policy.model.apply(p, obs, method="encode")
        logp, entropy, _ = policy.evaluate(p, obs, actions, avail)
        det_actions, det_logp, _ = policy.act(p, obs, avail, jax.random.PRNGKey(0), True)
        if spec.discrete:
            det_actions = det_actions[..., None]
        out = dict(values=values[..., None], obs_rep=rep, logp=logp, entropy=entropy, det_actions=det_actions,
                   det_logp=det_logp)
        if not with_loss:
            return out, None, None
        (_, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        return out, parts, grads

    out, parts, grads = jax.jit(run, compiler_options=compiler_options)(params)
    rows = [_compare(q, out[q], refs[q], OUTPUT_TOL) for q in OUTPUTS]
    if with_loss:
        rows += [_compare(f"loss/{q}", parts[f"loss/{q}"], loss_refs[q], OUTPUT_TOL) for q in LOSS_PARTS]
        rows += _compare_grads(data, policy, grads, name)
    return rows


def _loss_fn(policy, obs, actions, avail, loss_in, config):
    def loss_fn(p):
        lp, ent, v = policy.evaluate(p, obs, actions, avail)
        return ppo_loss(
            lp, ent, v,
            old_logp=loss_in["old_logp"],
            advantages=loss_in["adv"][..., 0],
            value_preds=loss_in["value_preds"][..., 0],
            value_targets=loss_in["returns"][..., 0],
            active=loss_in["active"][..., 0],
            config=config,
        )

    return loss_fn


def _compare_grads(data, policy, grads, name) -> list[Row]:
    spec = policy.spec
    grads_torch = torch_import.flax_to_torch(grads, policy.config, spec.discrete, spec.n_agents)
    grad_keys = sorted(k[len("grad/"):] for k in data if k.startswith("grad/"))
    if not grad_keys:
        raise ValueError(f"{name} has a loss/ section but no 'grad/' arrays")
    rows = []
    for key in grad_keys:
        if key not in grads_torch:
            raise ValueError(f"{name} has a gradient for '{key}', which this model does not have")
        rows.append(_compare(f"grad/{key}", grads_torch[key], data[f"grad/{key}"], GRAD_TOL))
    missing = sorted(set(grads_torch) - set(grad_keys))
    if missing:
        raise ValueError(f"{name} lacks gradients for {len(missing)} parameters, e.g. {missing[:3]}")
    return rows
