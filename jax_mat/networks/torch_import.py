"""Official PyTorch MAT and MARWKV weights in, Flax parameters out (and gradients back).

Upstream checkpoints are ``state_dict``s of ``MultiAgentTransformer``
(``torch.save(transformer.state_dict(), "transformer_<episode>.pt")``) or of
MAT-MARWKV's ``MultiAgentRWKV`` (v4, v6). Every Flax leaf is built from one
or more upstream tensors by one rule:

* ``linear``: ``nn.Linear.weight`` ``(out, in)`` -> kernel ``(in, out)``;
* ``fused``: several ``Linear`` weights (query/key/value) -> one kernel,
  concatenated along ``out``; their biases likewise;
* ``embed``: the bias-free discrete action encoder ``(D, A + 1)`` -> an
  embedding table ``(A + 1, D)``;
* ``vector``: RWKV's ``(1, 1, C)`` mixing and decay vectors -> ``[C]``;
* ``copy``: LayerNorm weights and biases, ``log_std``, RWKV's other tensors.

The same table maps Flax gradients back to upstream names
(``flax_to_torch``), which is how the parity tests compare every gradient.
``entries`` builds the table of a ``MATConfig`` or a ``MARWKVConfig``;
``infer_shape`` tells the family (``"mat"`` or ``"marwkv"``) and sizes from
the names and shapes in a state dict. Upstream tensors that the model never
uses (``encoder.state_encoder.*``, whose input is hard-wired to zeros,
``decoder.obs_encoder.*``, and in MARWKV v4/v5 ``decoder.ln.*``) are
accepted and ignored.

MARWKV v5 has no upstream counterpart worth importing (upstream's v5
computes no WKV); its table uses the names of upstream's v5 file, so that
jax_mat's own v5 (the real RWKV-5) round-trips through the same format.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Mapping

import numpy as np

from jax_mat.networks.marwkv import MARWKVConfig
from jax_mat.networks.mat import MATConfig

IGNORED_PREFIXES = ("encoder.state_encoder.", "decoder.obs_encoder.")
Config = MATConfig | MARWKVConfig


@dataclasses.dataclass(frozen=True)
class Entry:
    """One Flax leaf and the upstream tensors it is made of."""

    flax_path: tuple[str, ...]
    torch_keys: tuple[str, ...]
    rule: str  # "linear" | "fused" | "embed" | "vector" | "copy", with "@agent<n>" for per-agent stacks


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
    family: str = "mat"  # "mat" | "marwkv"
    version: int | None = None  # MARWKV's RWKV version
    hybrid: bool = False  # MARWKV with MAT's attention encoder (mat_rwkv)
    n_head: int | None = None  # when the weights tell it (MARWKV v5/v6 WKV heads)


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


def _copy(flax_path, torch_key):
    return [Entry(flax_path, (torch_key,), "copy")]


def _vector(flax_path, torch_key):
    return [Entry(flax_path, (torch_key,), "vector")]


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


def _obs_encoder(enc):
    """``encoder.obs_encoder`` (LayerNorm, Linear) and ``encoder.ln``: the same in MAT and MARWKV."""
    return (
        _norm(enc + ("obs_ln",), "encoder.obs_encoder.0")
        + _linear(enc + ("obs_dense",), "encoder.obs_encoder.1")
        + _norm(enc + ("ln",), "encoder.ln")
    )


def _action_encoder(dec, discrete: bool):
    if discrete:
        return [Entry(dec + ("action_embed",), ("decoder.action_encoder.0.weight",), "embed")]
    return _linear(dec + ("action_dense",), "decoder.action_encoder.0")


def _log_std(discrete: bool):
    return [] if discrete else _copy(("params", "log_std"), "decoder.log_std")


def _mat_encoder(n_block: int):
    enc = ("params", "encoder")
    table = _obs_encoder(enc)
    for b in range(n_block):
        fp, tp = enc + (f"blocks_{b}",), f"encoder.blocks.{b}"
        table += _norm(fp + ("ln1",), tp + ".ln1") + _norm(fp + ("ln2",), tp + ".ln2")
        attn = tp + ".attn"
        table += _fused(fp + ("attn", "qkv"), (attn + ".query", attn + ".key", attn + ".value"))
        table += _linear(fp + ("attn", "proj"), attn + ".proj")
        table += _mlp_block(fp, tp)
    return table + _head(enc, "encoder")


def _mat_entries(config: MATConfig, discrete: bool, n_agent: int) -> list[Entry]:
    table = _mat_encoder(config.n_block) + _log_std(discrete)
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
    table += _action_encoder(dec, discrete)
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
    return table + _head(dec, "decoder")


def _rwkv4_block(f, t):
    """Upstream v4 (``<stack>.rwkv.h.<i>``): ``ln_1``/``ln_2`` without bias, ``attn``/``ffn`` with ``*_proj``."""
    table = _copy(f + ("ln1", "scale"), t + ".ln_1.weight") + _copy(f + ("ln2", "scale"), t + ".ln_2.weight")
    att, ffn = f + ("att",), f + ("ffn",)
    table += _copy(att + ("time_decay",), t + ".attn.time_decay") + _copy(att + ("time_first",), t + ".attn.time_first")
    for ours, theirs in (("k", "key"), ("v", "value"), ("r", "receptance")):
        table += _vector(att + (f"time_mix_{ours}",), f"{t}.attn.time_mix_{theirs}")
    for name in ("key", "value", "receptance", "output"):
        table += _linear(att + (name,), f"{t}.attn.{name}_proj", bias=False)
    for ours, theirs in (("k", "key"), ("r", "receptance")):
        table += _vector(ffn + (f"time_mix_{ours}",), f"{t}.ffn.time_mix_{theirs}")
    for name in ("key", "value", "receptance"):
        table += _linear(ffn + (name,), f"{t}.ffn.{name}_proj", bias=False)
    return table


def _rwkv56_block(f, t, version: int):
    """v5/v6 (``<stack>.<i>``): LayerNorms with bias, ``att``/``ffn`` with RWKV-LM's names."""
    table = []
    for ln in ("ln0", "ln1", "ln2") if version == 6 else ("ln1", "ln2"):
        table += _norm(f + (ln,), f"{t}.{ln}")
    att, ffn = f + ("att",), f + ("ffn",)
    if version == 5:
        for x in "kvrg":
            table += _vector(att + (f"time_mix_{x}",), f"{t}.att.time_mix_{x}")
        table += _copy(att + ("time_decay",), t + ".att.time_decay")
        ffn_mix = "time_mix"
    else:
        for x in "xwkvrg":
            table += _vector(att + (f"time_maa_{x}",), f"{t}.att.time_maa_{x}")
        for name in ("time_maa_w1", "time_maa_w2", "time_decay_w1", "time_decay_w2"):
            table += _copy(att + (name,), f"{t}.att.{name}")
        table += _vector(att + ("time_decay",), t + ".att.time_decay")
        ffn_mix = "time_maa"
    table += _copy(att + ("time_faaaa",), t + ".att.time_faaaa")
    for name in ("receptance", "key", "value", "output", "gate"):
        table += _linear(att + (name,), f"{t}.att.{name}", bias=False)
    table += _norm(att + ("ln_x",), t + ".att.ln_x")
    for x in "kr":
        table += _vector(ffn + (f"{ffn_mix}_{x}",), f"{t}.ffn.{ffn_mix}_{x}")
    for name in ("key", "receptance", "value"):
        table += _linear(ffn + (name,), f"{t}.ffn.{name}", bias=False)
    return table


def _rwkv_stack(fp, tp, config: MARWKVConfig):
    table = []
    for i in range(config.n_block):
        f = fp + (f"blocks_{i}",)
        if config.version == 4:
            table += _rwkv4_block(f, f"{tp}.rwkv.h.{i}")
        else:
            table += _rwkv56_block(f, f"{tp}.{i}", config.version)
    if config.version == 4:
        table += _copy(fp + ("ln_f", "scale"), f"{tp}.rwkv.ln_f.weight")
    return table


def _marwkv_entries(config: MARWKVConfig, discrete: bool) -> list[Entry]:
    enc, dec = ("params", "encoder"), ("params", "decoder")
    if config.hybrid:
        table = _mat_encoder(config.n_block)
    else:
        table = _obs_encoder(enc) + _rwkv_stack(enc + ("rwkv",), "encoder.rwkv", config) + _head(enc, "encoder")
    table += _log_std(discrete) + _action_encoder(dec, discrete)
    if config.version == 6:
        table += _norm(dec + ("ln",), "decoder.ln")
    return table + _rwkv_stack(dec + ("rwkv",), "decoder.rwkv", config) + _head(dec, "decoder")


def entries(config: Config, discrete: bool, n_agent: int) -> list[Entry]:
    """The full Flax <-> upstream table for a MAT or MARWKV of this configuration."""
    if isinstance(config, MARWKVConfig):
        return _marwkv_entries(config, discrete)
    return _mat_entries(config, discrete, n_agent)


def ignored_prefixes(config: Config) -> tuple[str, ...]:
    """Upstream tensors this configuration never uses (accepted, ignored, no gradient)."""
    if isinstance(config, MARWKVConfig) and config.version != 6:
        return IGNORED_PREFIXES + ("decoder.ln.",)
    return IGNORED_PREFIXES


def _to_flax_leaf(tensors: list[np.ndarray], rule: str) -> np.ndarray:
    if rule in ("linear", "embed"):
        return tensors[0].T
    if rule == "fused":
        return np.concatenate([t.T if t.ndim == 2 else t for t in tensors], axis=-1)
    if rule == "vector":
        return tensors[0].reshape(-1)
    return tensors[0]


def _to_torch_tensors(leaf: np.ndarray, rule: str, n: int) -> list[np.ndarray]:
    if rule in ("linear", "embed"):
        return [leaf.T]
    if rule == "fused":
        return [p.T if p.ndim == 2 else p for p in np.split(leaf, n, axis=-1)]
    if rule == "vector":
        return [leaf.reshape(1, 1, -1)]
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


def _family(config: Config) -> str:
    return f"MARWKV v{config.version}" if isinstance(config, MARWKVConfig) else "MAT"


def torch_to_flax(state_dict: Mapping[str, np.ndarray], config: Config, discrete: bool, n_agent: int) -> dict:
    """Build Flax params from an upstream state dict (numpy arrays, upstream names)."""
    table = entries(config, discrete, n_agent)
    needed = {k for e in table for k in e.torch_keys}
    missing = sorted(needed - set(state_dict))
    if missing:
        raise ValueError(f"state dict is missing {len(missing)} {_family(config)} tensors, e.g. {missing[:5]}")
    unknown = sorted(k for k in set(state_dict) - needed if not k.startswith(ignored_prefixes(config)))
    if unknown:
        raise ValueError(f"state dict has tensors this {_family(config)} configuration does not use: {unknown[:5]}")
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


def flax_to_torch(params: Mapping, config: Config, discrete: bool, n_agent: int) -> dict[str, np.ndarray]:
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
    """Read the model's family and sizes off an upstream state dict."""
    if any(k.startswith(("encoder.rwkv.", "decoder.rwkv.")) for k in state_dict):
        return _infer_marwkv(state_dict)
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


def _infer_marwkv(state_dict: Mapping[str, np.ndarray]) -> ModelShape:
    """MARWKV: the version from the block layout (v4 ``rwkv.h.<i>``, v6 ``ln0``, v5 ``time_mix_g``)."""
    if any(k.startswith("decoder.rwkv.rwkv.h.") for k in state_dict):
        version, pattern = 4, r"decoder\.rwkv\.rwkv\.h\.(\d+)\."
    elif "decoder.rwkv.0.ln0.weight" in state_dict:
        version, pattern = 6, r"decoder\.rwkv\.(\d+)\."
    elif "decoder.rwkv.0.att.time_mix_g" in state_dict:
        version, pattern = 5, r"decoder\.rwkv\.(\d+)\."
    else:
        raise ValueError("not an MARWKV state dict: no decoder.rwkv.rwkv.h.0.* (v4), decoder.rwkv.0.ln0 (v6) "
                         "or decoder.rwkv.0.att.time_mix_g (v5) tensors")
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))}
    try:
        n_embd, obs_dim = state_dict["encoder.obs_encoder.1.weight"].shape
        action_dim = state_dict["decoder.head.3.weight"].shape[0]
        n_head = None if version == 4 else int(state_dict["decoder.rwkv.0.att.time_faaaa"].shape[0])
    except KeyError as err:
        raise ValueError(f"not an MARWKV state dict: missing {err}") from None
    return ModelShape(
        obs_dim=int(obs_dim),
        action_dim=int(action_dim),
        discrete="decoder.log_std" not in state_dict,
        n_block=max(blocks) + 1,
        n_embd=int(n_embd),
        dec_actor=False,
        share_actor=False,
        family="marwkv",
        version=version,
        hybrid=any(k.startswith("encoder.blocks.") for k in state_dict),
        n_head=n_head,
    )


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
