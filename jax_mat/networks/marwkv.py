"""MARWKV: the Multi-Agent Transformer with RWKV blocks (j-thapa/MAT-MARWKV), in Flax linen.

Same encoder-decoder shape as MAT (``mat.py``), with the attention blocks
replaced by RWKV blocks (``rwkv.py``) running along the agent axis:

* Encoder: ``obs_encoder`` ``LayerNorm -> Linear -> GELU``, ``ln``, the RWKV
  stack (v4 ends with ``ln_f``) -> ``rep``; value head ``Linear -> GELU ->
  LayerNorm -> Linear`` on ``rep``.
* Decoder: the shifted actions (discrete: a bias-free ``Linear(A + 1, D)`` on
  one-hots, stored as an embedding table as in ``mat.py``; continuous: a
  ``Linear`` with bias) -> GELU, plus ``rep``; v6 then applies the decoder's
  ``ln``; the RWKV stack; the action head.
* ``hybrid=True`` (algorithm ``mat_rwkv``): MAT's attention encoder
  (``mat.Encoder``) with the RWKV decoder.

Upstream decodes by re-running the decoder on the whole shifted sequence for
every agent. Here ``decode_step`` advances one agent with each block's O(1)
recurrent state (previous inputs of the token shifts and the WKV state), so
choosing ``N`` agents' actions costs ``N`` single-position steps; the RWKV
recurrence is exact, so this equals the teacher-forced ``decode``.

The RWKV encoder is causal over agents too, so ``act`` encodes the agents in
segments of ``act_segment`` (``encode_segment``, each continuing from the
state the previous one left) and decodes each segment as soon as it is
encoded. The answer is the same as encoding everything first; this is an
optimisation (``act_segment=0`` turns it off), and what it gains, cache
locality at a few hundred agents, is measured in docs/benchmarks.md ("MARWKV
network"). MAT's attention encoder (and the hybrid's) sees all agents at once
and cannot be streamed.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_mat.envs.base import EnvSpec
from jax_mat.networks import heads, layers, mat, rwkv
from jax_mat.networks import policy as policy_lib
from jax_mat.ops import wkv as wkv_ops


@dataclasses.dataclass(frozen=True)
class MARWKVConfig:
    """Network options (upstream's SMAC settings: v4, 1 block, 64 wide).

    ``n_head`` splits v5/v6's WKV into heads of size ``n_embd / n_head``
    (upstream hard-codes one head of 64) and sets the attention heads of the
    hybrid's MAT encoder; v4's WKV is per channel and ignores it.
    """

    version: int = 4
    n_block: int = 1
    n_embd: int = 64
    n_head: int = 1
    hybrid: bool = False  # MAT's attention encoder + RWKV decoder (algorithm mat_rwkv)
    wkv_impl: str = "auto"  # "scan" | "chunked" | "pallas" | "auto" (see jax_mat.ops.wkv)
    act_segment: int = 64  # act streams the RWKV encoder this many agents at a time (0: all agents first)
    zero_std: bool = False  # continuous actions: start log_std at 0 (std 0.25) instead of 1 (std 0.37)

    def __post_init__(self):
        if self.version not in rwkv.VERSIONS:
            raise ValueError(f"unknown RWKV version {self.version!r}; allowed: 4, 5, 6")
        for name in ("n_block", "n_embd", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"MARWKV {name} must be >= 1, got {getattr(self, name)}")
        if self.act_segment < 0:
            raise ValueError(f"MARWKV act_segment must be >= 0 (0: encode all agents before decoding), "
                             f"got {self.act_segment}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"MARWKV n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"the head size is n_embd / n_head"
            )
        if rwkv.ffn_dim(self.version, self.n_embd) < 1:
            raise ValueError(
                f"MARWKV v6 needs n_embd >= 10 (its channel-mix width int(3.5 * n_embd) // 32 * 32 "
                f"is 0 for n_embd={self.n_embd})"
            )
        if self.wkv_impl not in wkv_ops.IMPLS:
            raise ValueError(f"unknown WKV impl {self.wkv_impl!r}; allowed: {', '.join(map(repr, wkv_ops.IMPLS))}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def stack(self, name: str | None = None) -> rwkv.RWKVStack:
        return rwkv.RWKVStack(self.version, self.n_block, self.n_embd, self.n_head, self.wkv_impl, name=name)


class Encoder(nn.Module):
    """Observation encoder with an RWKV stack over agents, and the per-agent value head."""

    config: MARWKVConfig

    def setup(self):
        d = self.config.n_embd
        self.obs_ln = layers.layer_norm()
        self.obs_dense = layers.dense(d, layers.RELU_GAIN)
        self.ln = layers.layer_norm()
        self.rwkv = self.config.stack()
        self.head_fc = layers.dense(d, layers.RELU_GAIN)
        self.head_ln = layers.layer_norm()
        self.head_out = layers.dense(1, layers.HEAD_GAIN)

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``obs``: ``[B, N, O]`` -> values ``[B, N]``, representation ``[B, N, D]``."""
        x = self.rwkv(self._embed(obs))
        return self._values(x), x

    def segment(self, obs: jax.Array, states: list[rwkv.BlockState]):
        """Agents ``[B, S, O]`` continuing from the RWKV stack's ``states``: values, representation, next states."""
        x, states = self.rwkv.segment(self._embed(obs), states)
        return self._values(x), x, states

    def _embed(self, obs):
        return self.ln(layers.gelu(self.obs_dense(self.obs_ln(obs))))

    def _values(self, x):
        return self.head_out(self.head_ln(layers.gelu(self.head_fc(x))))[..., 0]


class Decoder(nn.Module):
    """RWKV action decoder over agents: teacher-forced (``__call__``) or one agent at a time (``step``)."""

    action_dim: int
    discrete: bool
    config: MARWKVConfig

    def setup(self):
        d = self.config.n_embd
        if self.discrete:
            self.action_embed = self.param(
                "action_embed",
                lambda key, shape: layers.orthogonal(layers.RELU_GAIN)(key, shape[::-1]).T,
                (self.action_dim + 1, d),
            )
        else:
            self.action_dense = layers.dense(d, layers.RELU_GAIN)
        if self.config.version == 6:
            self.ln = layers.layer_norm()
        self.rwkv = self.config.stack()
        self.head_fc = layers.dense(d, layers.RELU_GAIN)
        self.head_ln = layers.layer_norm()
        self.head_out = layers.dense(self.action_dim, layers.HEAD_GAIN)

    def _input(self, shifted: jax.Array, rep: jax.Array) -> jax.Array:
        """``shifted``: ``[...]`` tokens or ``[..., A]`` previous actions; ``rep`` ``[..., D]``."""
        if self.discrete:
            emb = jnp.take(layers.gelu(self.action_embed), shifted, axis=0)  # GELU on the (A + 1)-row table
        else:
            emb = layers.gelu(self.action_dense(shifted))
        x = emb + rep
        return self.ln(x) if self.config.version == 6 else x

    def head(self, x: jax.Array) -> jax.Array:
        return self.head_out(self.head_ln(layers.gelu(self.head_fc(x))))

    def __call__(self, shifted: jax.Array, rep: jax.Array) -> jax.Array:
        """``[B, N]`` tokens or ``[B, N, A]``, ``rep`` ``[B, N, D]`` -> ``[B, N, A]``."""
        return self.head(self.rwkv(self._input(shifted, rep)))

    def step(self, shifted: jax.Array, rep: jax.Array, states: list[rwkv.BlockState]):
        """One agent: ``[B]`` or ``[B, A]``, ``rep`` ``[B, D]`` -> ``[B, A]`` and the next states."""
        x, states = self.rwkv.step(self._input(shifted, rep), states)
        return self.head(x), states


class MultiAgentRWKV(nn.Module):
    """Encoder (RWKV, or MAT's attention encoder when ``hybrid``) + RWKV decoder + Gaussian ``log_std``."""

    action_dim: int
    discrete: bool
    config: MARWKVConfig

    def setup(self):
        c = self.config
        self.encoder = mat.Encoder(c.n_block, c.n_embd, c.n_head) if c.hybrid else Encoder(c)
        self.decoder = Decoder(self.action_dim, self.discrete, c)
        if not self.discrete:
            self.log_std = self.param("log_std", layers.log_std_init(c.zero_std), (self.action_dim,))

    def __call__(self, obs: jax.Array, shifted: jax.Array):
        """Initialisation entry point: touches every parameter."""
        values, rep = self.encode(obs)
        return values, self.decode(shifted, rep)

    def encode(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encoder(obs)

    def encode_segment(self, obs: jax.Array, states: list[rwkv.BlockState]):
        """The RWKV encoder (not the hybrid's) on agents ``[B, S, O]`` from ``states``: see ``Encoder.segment``."""
        return self.encoder.segment(obs, states)

    def decode(self, shifted: jax.Array, rep: jax.Array, obs: jax.Array | None = None) -> jax.Array:
        """Teacher-forced logits (or means) ``[B, N, A]``; ``obs`` is unused (MAT's signature)."""
        return self.decoder(shifted, rep)

    def decode_step(self, shifted: jax.Array, rep: jax.Array, states: list[rwkv.BlockState]):
        return self.decoder.step(shifted, rep, states)


class MARWKVPolicy(policy_lib.EncoderDecoderPolicy):
    """MARWKV (or the ``hybrid`` MAT-encoder variant) behind the ``Policy`` protocol.

    ``init``, ``value`` and ``evaluate`` (one parallel pass) come from
    ``EncoderDecoderPolicy``; ``act`` decodes recurrently, one agent per step,
    with the RWKV encoder streamed ``act_segment`` agents ahead (module
    docstring).
    """

    def __init__(self, spec: EnvSpec, config: MARWKVConfig = MARWKVConfig()):
        self.spec = spec
        self.config = config
        self.model = MultiAgentRWKV(action_dim=spec.action_dim, discrete=spec.discrete, config=config)

    def initial_states(self, batch: int) -> list[rwkv.BlockState]:
        """The decoder's recurrent state before agent 0."""
        c = self.config
        return rwkv.initial_states(c.version, c.n_block, batch, c.n_embd, c.n_head)

    def segments(self) -> tuple[int, ...]:
        """The agent positions at which ``act`` starts a new encoder segment (empty: one pass)."""
        c, n = self.config, self.spec.n_agents
        if c.hybrid or not c.act_segment or c.act_segment >= n:
            return ()
        return tuple(range(c.act_segment, n, c.act_segment))

    def act(self, params, obs, avail, key, deterministic=False, world_state=None):
        batch, n = obs.shape[:2]
        policy_lib.check_obs(self.spec, obs)
        policy_lib.check_avail(self.spec, avail, batch)
        bounds = (0, *self.segments(), n)
        swap = lambda x: jnp.swapaxes(x, 0, 1)  # [B, N, ...] <-> [N, B, ...]
        noise = self._noise(key, (n, batch), deterministic)
        avail_n = swap(avail) if self.spec.discrete else jnp.zeros((n, batch, 0))

        def step(carry, x):
            prev, states = carry
            rep_i, noise_i, avail_i = x
            out, states = self.model.apply(params, prev, rep_i, states, method="decode_step")
            action = self._pick(params, out, avail_i, noise_i, deterministic)
            return (policy_lib.next_token(self.spec, action), states), (action, out)

        c = self.config
        encoder_states = rwkv.initial_states(c.version, c.n_block, batch, c.n_embd, c.n_head)
        carry = (policy_lib.start_tokens(self.spec, batch), self.initial_states(batch))
        values, outs = [], []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            if len(bounds) == 2:
                values_s, rep = self.model.apply(params, obs, method="encode")
            else:
                values_s, rep, encoder_states = self.model.apply(
                    params, obs[:, start:stop], encoder_states, method="encode_segment"
                )
            carry, out = jax.lax.scan(step, carry, (swap(rep), noise[start:stop], avail_n[start:stop]))
            values.append(values_s)
            outs.append(out)
        actions, out = jax.tree.map(lambda *parts: swap(jnp.concatenate(parts)), *outs)
        logp = self._dist(params, out, avail).log_prob(actions)
        return actions, (logp[..., None] if self.spec.discrete else logp), jnp.concatenate(values, axis=1)

    def _pick(self, params, out, avail_i, noise_i, deterministic):
        """One agent's action from its decoder output ``[B, A]`` and ``_noise``.

        The draw ``_choose`` makes, without its log-probability: ``act`` scores
        all agents' actions at once after the loop, which keeps the log-softmax
        out of the sequential steps. The Gumbel-max draw is taken on the masked
        logits (``Categorical.sample_with`` takes it on their log-softmax,
        which differs by a per-row constant: the same argmax).
        """
        if self.spec.discrete:
            logits = heads.mask_logits(out, avail_i)
            return jnp.argmax(logits if deterministic else logits + noise_i, axis=-1).astype(jnp.int32)
        dist = heads.gaussian(out, params["params"]["log_std"])
        return dist.mode() if deterministic else dist.sample_with(noise_i)
