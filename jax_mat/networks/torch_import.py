"""Official PyTorch MAT weights in, Flax parameters out (and gradients back).

Upstream checkpoints are ``state_dict``s of ``MultiAgentTransformer``
(``torch.save(transformer.state_dict(), "transformer_<episode>.pt")``).
Every Flax leaf is built from one or more upstream tensors by one rule:

* ``linear``: ``nn.Linear.weight`` ``(out, in)`` -> kernel ``(in, out)``;
* ``fused``: several ``Linear`` weights (query/key/value) -> one kernel,
  concatenated along ``out``; their biases likewise;
* ``embed``: the bias-free discrete action encoder ``(D, A + 1)`` -> an
  embedding table ``(A + 1, D)``;
* ``copy``: LayerNorm weights and biases, ``log_std``.

The same table maps Flax gradients back to upstream names
(``flax_to_torch``), which is how the parity tests compare every gradient.
Upstream tensors that the model never uses (``encoder.state_encoder.*``,
whose input is hard-wired to zeros, and ``decoder.obs_encoder.*``) are
accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping

import numpy as np

from jax_mat.networks.mat import MATConfig

IGNORED_PREFIXES = ("encoder.state_encoder.", "decoder.obs_encoder.")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One Flax leaf and the upstream tensors it is made of."""

    flax_path: tuple[str, ...]
    torch_keys: tuple[str, ...]
    rule: str  # "linear" | "fused" | "embed" | "copy"


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What a state dict says about the model it came from."""

    obs_dim: int
    action_dim: int
    discrete: bool
    n_block: int
    n_embd: int
    dec_actor: bool
    share_actor: bool


def _linear(flax_prefix, torch_prefix, bias=True):
    entries = [Entry(flax_prefix + ("kernel",), (torch_prefix + ".weight",), "linear")]
    if bias:
        entries.append(Entry(flax_prefix + ("bias",), (torch_prefix + ".bias",), "copy"))
    return entries


def _norm(flax_prefix, torch_prefix):
    return [
        Entry(flax_prefix + ("scale",), (torch_prefix + ".weight",), "copy"),
        Entry(flax_prefix + ("bias",), (torch_prefix + ".bias",), "copy"),
    ]


def _fused(flax_prefix, torch_prefixes):
    return [
        Entry(flax_prefix + ("kernel",), tuple(p + ".weight" for p in torch_prefixes), "fused"),
        Entry(flax_prefix + ("bias",), tuple(p + ".bias" for p in torch_prefixes), "fused"),
    ]


def _mlp_block(fp, tp):
    return _linear(fp + ("mlp", "fc"), tp + ".mlp.0") + _linear(fp + ("mlp", "out"), tp + ".mlp.2")


def _head(fp, tp):
    return _linear(fp + ("head_fc",), tp + ".head.0") + _norm(fp + ("head_ln",), tp + ".head.2") + _linear(
        fp + ("head_out",), tp + ".head.3"
    )


def _actor_mlp(fp, tp):
    return (
        _norm(fp + ("ln0",), tp + ".0")
        + _linear(fp + ("fc1",), tp + ".1")
        + _norm(fp + ("ln1",), tp + ".3")
        + _linear(fp + ("fc2",), tp + ".4")
        + _norm(fp + ("ln2",), tp + ".6")
        + _linear(fp + ("out",), tp + ".7")
    )


def entries(config: MATConfig, discrete: bool, n_agent: int) -> list[Entry]:
    """The full Flax <-> upstream table for a MAT of this configuration."""
    enc = ("params", "encoder")
    table = _norm(enc + ("obs_ln",), "encoder.obs_encoder.0") + _linear(
        enc + ("obs_dense",), "encoder.obs_encoder.1"
    )
    table += _norm(enc + ("ln",), "encoder.ln")
    for b in range(config.n_block):
        fp, tp = enc + (f"blocks_{b}",), f"encoder.blocks.{b}"
        table += _norm(fp + ("ln1",), tp + ".ln1") + _norm(fp + ("ln2",), tp + ".ln2")
        attn = tp + ".attn"
        table += _fused(fp + ("attn", "qkv"), (attn + ".query", attn + ".key", attn + ".value"))
        table += _linear(fp + ("attn", "proj"), attn + ".proj")
        table += _mlp_block(fp, tp)
    table += _head(enc, "encoder")

    if not discrete:
        table.append(Entry(("params", "log_std"), ("decoder.log_std",), "copy"))
    if config.dec_actor:
        act = ("params", "actor")
        if config.share_actor:
            table += _actor_mlp(act + ("actor",), "decoder.mlp")
        else:
            table += [
                Entry(e.flax_path, e.torch_keys, e.rule + f"@agent{n}")
                for n in range(n_agent)
                for e in _actor_mlp(act + ("actors",), f"decoder.mlp.{n}")
            ]
        return table

    dec = ("params", "decoder")
    if discrete:
        table.append(Entry(dec + ("action_embed",), ("decoder.action_encoder.0.weight",), "embed"))
    else:
        table += _linear(dec + ("action_dense",), "decoder.action_encoder.0")
    table += _norm(dec + ("ln",), "decoder.ln")
    for b in range(config.n_block):
        fp, tp = dec + (f"blocks_{b}",), f"decoder.blocks.{b}"
        for ln in ("ln1", "ln2", "ln3"):
            table += _norm(fp + (ln,), f"{tp}.{ln}")
        a1, a2 = tp + ".attn1", tp + ".attn2"
        table += _fused(fp + ("attn1", "qkv"), (a1 + ".query", a1 + ".key", a1 + ".value"))
        table += _linear(fp + ("attn1", "proj"), a1 + ".proj")
        table += _linear(fp + ("attn2", "q"), a2 + ".query")
        table += _fused(fp + ("attn2", "kv"), (a2 + ".key", a2 + ".value"))
        table += _linear(fp + ("attn2", "proj"), a2 + ".proj")
        table += _mlp_block(fp, tp)
    table += _head(dec, "decoder")
    return table


def _to_flax_leaf(tensors: list[np.ndarray], rule: str) -> np.ndarray:
    if rule in ("linear", "embed"):
        return tensors[0].T
    if rule == "fused":
        return np.concatenate([t.T if t.ndim == 2 else t for t in tensors], axis=-1)
    return tensors[0]


def _to_torch_tensors(leaf: np.ndarray, rule: str, n: int) -> list[np.ndarray]:
    if rule in ("linear", "embed"):
        return [leaf.T]
    if rule == "fused":
        return [p.T if p.ndim == 2 else p for p in np.split(leaf, n, axis=-1)]
    return [leaf]


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def _split_rule(rule: str) -> tuple[str, int | None]:
    if "@agent" in rule:
        base, agent = rule.split("@agent")
        return base, int(agent)
    return rule, None


def torch_to_flax(state_dict: Mapping[str, np.ndarray], config: MATConfig, discrete: bool, n_agent: int) -> dict:
    """Build Flax params from an upstream state dict (numpy arrays, upstream names)."""
    table = entries(config, discrete, n_agent)
    needed = {k for e in table for k in e.torch_keys}
    missing = sorted(needed - set(state_dict))
    if missing:
        raise ValueError(f"state dict is missing {len(missing)} MAT tensors, e.g. {missing[:5]}")
    unknown = sorted(k for k in set(state_dict) - needed if not k.startswith(IGNORED_PREFIXES))
    if unknown:
        raise ValueError(f"state dict has tensors this MAT configuration does not use: {unknown[:5]}")
    params: dict = {}
    stacked: dict[tuple[str, ...], dict[int, np.ndarray]] = {}
    for e in table:
        rule, agent = _split_rule(e.rule)
        leaf = _to_flax_leaf([np.asarray(state_dict[k], np.float32) for k in e.torch_keys], rule)
        if agent is None:
            _set(params, e.flax_path, leaf)
        else:
            stacked.setdefault(e.flax_path, {})[agent] = leaf
    for path, per_agent in stacked.items():
        _set(params, path, np.stack([per_agent[n] for n in range(n_agent)]))
    return params


def flax_to_torch(params: Mapping, config: MATConfig, discrete: bool, n_agent: int) -> dict[str, np.ndarray]:
    """Inverse of ``torch_to_flax`` (used for parameters and their gradients)."""
    out: dict[str, np.ndarray] = {}
    for e in entries(config, discrete, n_agent):
        rule, agent = _split_rule(e.rule)
        leaf = np.asarray(_get(params, e.flax_path))
        if agent is not None:
            leaf = leaf[agent]
        for key, tensor in zip(e.torch_keys, _to_torch_tensors(leaf, rule, len(e.torch_keys))):
            out[key] = tensor
    return out


def infer_shape(state_dict: Mapping[str, np.ndarray]) -> ModelShape:
    """Read the model's sizes off an upstream state dict."""
    try:
        obs_w = state_dict["encoder.obs_encoder.1.weight"]
        n_embd, obs_dim = obs_w.shape
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
        discrete = "decoder.log_std" not in state_dict
        dec_actor = any(k.startswith("decoder.mlp.") for k in state_dict)
        if dec_actor:
            share_actor = "decoder.mlp.7.weight" in state_dict
            head = "decoder.mlp.7.weight" if share_actor else "decoder.mlp.0.7.weight"
        else:
            share_actor = False
            head = "decoder.head.3.weight"
        action_dim = state_dict[head].shape[0]
    except KeyError as err:
        raise ValueError(f"not an official MAT state dict: missing {err}") from None
    if not blocks:
        raise ValueError("not an official MAT state dict: no encoder.blocks.* tensors")
    return ModelShape(int(obs_dim), int(action_dim), discrete, max(blocks) + 1, int(n_embd), dec_actor, share_actor)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read upstream tensors from a ``.pt`` checkpoint (needs torch) or a fixture ``.npz`` (``param/`` keys)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"no such checkpoint: {path}")
    if path.endswith(".npz"):
        with np.load(path) as data:
            params = {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
        if not params:
            raise ValueError(f"{path} has no 'param/<name>' arrays")
        return params
    try:
        import torch
    except ImportError:
        raise ValueError(f"reading {path} needs torch: pip install 'jax_mat[bridges]'") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict")
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
