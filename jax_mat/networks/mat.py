"""The Multi-Agent Transformer (Wen et al., NeurIPS 2022) in Flax linen.

The math follows the official PyTorch implementation (PKU-MARL/Multi-Agent-
Transformer, ``ma_transformer.py`` and ``transformer_act.py``) to float32
precision: post-LayerNorm blocks (eps 1e-5), exact erf GELU, orthogonal
initialisation with gain ``sqrt(2)`` before a GELU and 0.01 elsewhere, zero
biases, and the decoder's second attention whose *query* is the encoder's
observation representation while keys and values come from the action stream.

Two things differ from upstream in form only:

* Attention projections are stored fused (``qkv`` for self-attention, ``q`` and
  ``kv`` for the decoder's cross attention), so each block does one matmul
  where upstream does three. ``torch_import`` splits and joins them.
* The discrete action encoder, a bias-free ``Linear(A + 1, D)`` applied to a
  one-hot, is stored as the equivalent ``[A + 1, D]`` embedding table and
  gathered; token 0 is the start token, token ``1 + a`` is action ``a``.

Decoding comes in two forms with the same answer: ``decode`` runs the whole
(teacher-forced) action sequence in one causal pass, and ``decode_step``
advances one agent with a key/value cache, so autoregressive generation for
``N`` agents costs ``N`` single-position steps instead of ``N`` full passes.

Written for speed on XLA's CPU backend (same numbers; measured in
``docs/benchmarks.md``): LayerNorm has a hand-written backward pass; the
observation LayerNorm's affine map is folded into the next layer's kernel;
a token's embedding is gathered from the GELU-and-LayerNorm'd table; attention
runs on ``[B * H, N, E]`` operands and the KV cache is stored that way, grown
32 positions at a time while decoding. (Keeping a minibatch's activations in
cache is the trainer's job: it differentiates in micro-batches,
``ppo.accumulated_loss_and_grad``.)

Shapes: ``B`` batch, ``N`` agents, ``O`` observation size, ``A`` actions (or
action dimensions), ``D`` embedding width, ``H`` heads, ``E = D // H``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_mat.envs.base import EnvSpec
from jax_mat.networks import policy as policy_lib
from jax_mat.networks.layers import (HEAD_GAIN, RELU_GAIN, attention, cache_attention, cache_write, causal_mask,
                                     dense, gelu, layer_norm, log_std_init, orthogonal, split_heads)

DECODE_SEGMENT = 32  # act grows the KV caches this many positions at a time


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection."""

    n_embd: int
    n_head: int

    def setup(self):
        self.qkv = dense(3 * self.n_embd, HEAD_GAIN, n_fused=3)
        self.proj = dense(self.n_embd, HEAD_GAIN)

    def project(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``[..., D]`` -> q, k, v each ``[..., H, E]``."""
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        return tuple(split_heads(t, self.n_head) for t in (q, k, v))

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        """``x``: ``[B, N, D]`` -> ``[B, N, D]``."""
        q, k, v = self.project(x)
        return self.proj(attention(q, k, v, mask))


class CrossAttention(nn.Module):
    """Attention whose queries and keys/values come from different streams."""

    n_embd: int
    n_head: int

    def setup(self):
        self.q = dense(self.n_embd, HEAD_GAIN)
        self.kv = dense(2 * self.n_embd, HEAD_GAIN, n_fused=2)
        self.proj = dense(self.n_embd, HEAD_GAIN)

    def project_query(self, x: jax.Array) -> jax.Array:
        return split_heads(self.q(x), self.n_head)

    def project_kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        k, v = jnp.split(self.kv(x), 2, axis=-1)
        return split_heads(k, self.n_head), split_heads(v, self.n_head)

    def __call__(self, query_input: jax.Array, kv_input: jax.Array, mask: jax.Array | None) -> jax.Array:
        q = self.project_query(query_input)
        k, v = self.project_kv(kv_input)
        return self.proj(attention(q, k, v, mask))


class MLP(nn.Module):
    """Upstream's block MLP: ``Linear(D, D) -> GELU -> Linear(D, D)``."""

    n_embd: int

    def setup(self):
        self.fc = dense(self.n_embd, RELU_GAIN)
        self.out = dense(self.n_embd, HEAD_GAIN)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(gelu(self.fc(x)))


class EncodeBlock(nn.Module):
    n_embd: int
    n_head: int

    def setup(self):
        self.ln1 = layer_norm()
        self.ln2 = layer_norm()
        self.attn = SelfAttention(self.n_embd, self.n_head)
        self.mlp = MLP(self.n_embd)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.ln1(x + self.attn(x, None))
        return self.ln2(x + self.mlp(x))


class DecodeBlock(nn.Module):
    n_embd: int
    n_head: int

    def setup(self):
        self.ln1 = layer_norm()
        self.ln2 = layer_norm()
        self.ln3 = layer_norm()
        self.attn1 = SelfAttention(self.n_embd, self.n_head)
        self.attn2 = CrossAttention(self.n_embd, self.n_head)
        self.mlp = MLP(self.n_embd)

    def __call__(self, x: jax.Array, rep: jax.Array) -> jax.Array:
        """``x``, ``rep``: ``[B, N, D]``; causal over agents."""
        mask = causal_mask(x.shape[1])
        x = self.ln1(x + self.attn1(x, mask))
        x = self.ln2(rep + self.attn2(rep, x, mask))
        return self.ln3(x + self.mlp(x))

    def step(self, x: jax.Array, rep_q: jax.Array, rep: jax.Array, cache: "BlockCache", i: jax.Array):
        """Advance one position.

        Args:
          x: ``[B, D]`` this position's input.
          rep_q: ``[B, H, E]`` the cross-attention query of ``rep`` here.
          rep: ``[B, D]`` the observation representation here.
          cache: keys and values of positions ``< i``.
          i: ``[]`` int32 position.
        Returns:
          ``[B, D]`` output and the cache with position ``i`` written.
        """
        visible = jnp.arange(cache.k1.shape[1]) <= i
        q, k, v = self.attn1.project(x)
        k1, v1 = cache_write(cache.k1, k, i), cache_write(cache.v1, v, i)
        x = self.ln1(x + self.attn1.proj(cache_attention(q, k1, v1, visible)))
        k, v = self.attn2.project_kv(x)
        k2, v2 = cache_write(cache.k2, k, i), cache_write(cache.v2, v, i)
        x = self.ln2(rep + self.attn2.proj(cache_attention(rep_q, k2, v2, visible)))
        x = self.ln3(x + self.mlp(x))
        return x, BlockCache(k1, v1, k2, v2)


class BlockCache(NamedTuple):
    """Keys and values of one decoder block, each ``[B * H, N, E]`` (row ``b * H + h``)."""

    k1: jax.Array
    v1: jax.Array
    k2: jax.Array
    v2: jax.Array


class Encoder(nn.Module):
    """Observation encoder and per-agent value head."""

    n_block: int
    n_embd: int
    n_head: int

    def setup(self):
        self.obs_ln = layer_norm()
        self.obs_dense = dense(self.n_embd, RELU_GAIN)
        self.ln = layer_norm()
        self.blocks = [EncodeBlock(self.n_embd, self.n_head) for _ in range(self.n_block)]
        self.head_fc = dense(self.n_embd, RELU_GAIN)
        self.head_ln = layer_norm()
        self.head_out = dense(1, HEAD_GAIN)

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``obs``: ``[B, N, O]`` -> values ``[B, N]``, representation ``[B, N, D]``."""
        xhat, affine = self.obs_ln(obs, affine=False)
        x = self.ln(gelu(self.obs_dense(xhat, in_affine=affine)))
        for block in self.blocks:
            x = block(x)
        values = self.head_out(self.head_ln(gelu(self.head_fc(x))))
        return values[..., 0], x


class Decoder(nn.Module):
    """Autoregressive action decoder over agents."""

    action_dim: int
    discrete: bool
    n_block: int
    n_embd: int
    n_head: int

    def setup(self):
        if self.discrete:
            # Upstream's bias-free Linear(A + 1, D) on one-hots, as an embedding table.
            self.action_embed = self.param(
                "action_embed",
                lambda key, shape: orthogonal(RELU_GAIN)(key, shape[::-1]).T,
                (self.action_dim + 1, self.n_embd),
            )
        else:
            self.action_dense = dense(self.n_embd, RELU_GAIN)
        self.ln = layer_norm()
        self.blocks = [DecodeBlock(self.n_embd, self.n_head) for _ in range(self.n_block)]
        self.head_fc = dense(self.n_embd, RELU_GAIN)
        self.head_ln = layer_norm()
        self.head_out = dense(self.action_dim, HEAD_GAIN)

    def token_table(self) -> jax.Array:
        """Discrete actions: every token's embedding after GELU and ``ln``, ``[A + 1, D]``.

        GELU and LayerNorm act row by row, so embedding a token is a gather
        from this table.
        """
        return self.ln(gelu(self.action_embed))

    def embed(self, shifted: jax.Array, table: jax.Array | None = None) -> jax.Array:
        """Embed the shifted action stream.

        ``shifted``: ``[...]`` int32 tokens (discrete) or ``[..., A]`` previous
        actions (continuous); returns ``[..., D]`` after the decoder's ``ln``.
        ``table``: ``token_table()`` when the caller has it already.
        """
        if self.discrete:
            return jnp.take(self.token_table() if table is None else table, shifted, axis=0)
        return self.ln(gelu(self.action_dense(shifted)))

    def head(self, x: jax.Array) -> jax.Array:
        return self.head_out(self.head_ln(gelu(self.head_fc(x))))

    def __call__(self, shifted: jax.Array, rep: jax.Array) -> jax.Array:
        """Teacher-forced pass: ``[B, N]`` tokens or ``[B, N, A]`` -> ``[B, N, A]``."""
        x = self.embed(shifted)
        for block in self.blocks:
            x = block(x, rep)
        return self.head(x)

    def cross_queries(self, rep: jax.Array) -> list[jax.Array]:
        """Each block's cross-attention queries, ``[B, N, H, E]``: they depend on ``rep`` alone."""
        return [block.attn2.project_query(rep) for block in self.blocks]

    def step(self, shifted: jax.Array, rep_q: list[jax.Array], rep: jax.Array, caches: list[BlockCache], i,
             table: jax.Array | None = None):
        """One position: ``shifted`` ``[B]`` or ``[B, A]``, ``rep`` ``[B, D]`` -> ``[B, A]``."""
        x = self.embed(shifted, table)
        new_caches = []
        for block, q, cache in zip(self.blocks, rep_q, caches):
            x, cache = block.step(x, q, rep, cache, i)
            new_caches.append(cache)
        return self.head(x), new_caches


class DecentralisedActor(nn.Module):
    """MAT-Dec's actor: an MLP on each agent's own observation.

    ``LN -> Linear -> GELU -> LN -> Linear -> GELU -> LN -> Linear``, shared by
    all agents or (``share_actor=False``) one per agent, stacked and vmapped.
    """

    action_dim: int
    n_embd: int
    share_actor: bool

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """``[B, N, O]`` -> ``[B, N, A]``."""
        if self.share_actor:
            return _ActorMLP(self.action_dim, self.n_embd, name="actor")(obs)
        per_agent = nn.vmap(
            _ActorMLP,
            in_axes=1,
            out_axes=1,
            variable_axes={"params": 0},
            split_rngs={"params": True},
        )
        return per_agent(self.action_dim, self.n_embd, name="actors")(obs)


class _ActorMLP(nn.Module):
    action_dim: int
    n_embd: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = gelu(dense(self.n_embd, RELU_GAIN, name="fc1")(layer_norm("ln0")(x)))
        x = gelu(dense(self.n_embd, RELU_GAIN, name="fc2")(layer_norm("ln1")(x)))
        return dense(self.action_dim, HEAD_GAIN, name="out")(layer_norm("ln2")(x))


class MultiAgentTransformer(nn.Module):
    """Encoder + decoder (or MAT-Dec's decentralised actor) + Gaussian ``log_std``."""

    action_dim: int
    discrete: bool
    n_block: int = 1
    n_embd: int = 64
    n_head: int = 1
    dec_actor: bool = False
    share_actor: bool = False
    zero_std: bool = False

    def setup(self):
        self.encoder = Encoder(self.n_block, self.n_embd, self.n_head)
        if self.dec_actor:
            self.actor = DecentralisedActor(self.action_dim, self.n_embd, self.share_actor)
        else:
            self.decoder = Decoder(self.action_dim, self.discrete, self.n_block, self.n_embd, self.n_head)
        if not self.discrete:
            self.log_std = self.param("log_std", log_std_init(self.zero_std), (self.action_dim,))

    def __call__(self, obs: jax.Array, shifted: jax.Array):
        """Initialisation entry point: touches every parameter."""
        values, rep = self.encode(obs)
        return values, self.decode(shifted, rep, obs)

    def encode(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encoder(obs)

    def decode(self, shifted: jax.Array, rep: jax.Array, obs: jax.Array) -> jax.Array:
        """Teacher-forced logits (or means) ``[B, N, A]``."""
        if self.dec_actor:
            return self.actor(obs)
        return self.decoder(shifted, rep)

    def init_decode(self, rep: jax.Array, length: int | None = None) -> tuple[list[jax.Array], list[BlockCache]]:
        """Cross-attention queries and empty caches (for ``length`` positions, default all) for ``decode_step``."""
        queries = self.decoder.cross_queries(rep)
        b, n, _ = rep.shape
        n = n if length is None else length
        e = self.n_embd // self.n_head
        zeros = jnp.zeros((b * self.n_head, n, e), rep.dtype)
        caches = [BlockCache(zeros, zeros, zeros, zeros) for _ in range(self.n_block)]
        return queries, caches

    def decode_step(self, shifted, rep_q, rep, caches, i, table=None):
        return self.decoder.step(shifted, rep_q, rep, caches, i, table)

    def token_table(self) -> jax.Array:
        return self.decoder.token_table()


@dataclasses.dataclass(frozen=True)
class MATConfig:
    """Network options (upstream defaults for SMAC: 1 block, 64 wide, 1 head)."""

    n_block: int = 1
    n_embd: int = 64
    n_head: int = 1
    dec_actor: bool = False
    share_actor: bool = False
    zero_std: bool = False  # continuous actions: start log_std at 0 (std 0.25) instead of 1 (std 0.37)

    def __post_init__(self):
        for name in ("n_block", "n_embd", "n_head"):
            if getattr(self, name) < 1:
                raise ValueError(f"MAT {name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"MAT n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


class MATPolicy(policy_lib.EncoderDecoderPolicy):
    """MAT (or MAT-Dec with ``dec_actor=True``) behind the ``Policy`` protocol.

    ``init``, ``value`` and ``evaluate`` come from ``EncoderDecoderPolicy``;
    ``act`` decodes with the KV cache.
    """

    def __init__(self, spec: EnvSpec, config: MATConfig = MATConfig()):
        self.spec = spec
        self.config = config
        self.model = MultiAgentTransformer(
            action_dim=spec.action_dim,
            discrete=spec.discrete,
            n_block=config.n_block,
            n_embd=config.n_embd,
            n_head=config.n_head,
            dec_actor=config.dec_actor,
            share_actor=config.share_actor,
            zero_std=config.zero_std,
        )

    def act(self, params, obs, avail, key, deterministic=False, world_state=None):
        batch = obs.shape[0]
        policy_lib.check_obs(self.spec, obs)
        policy_lib.check_avail(self.spec, avail, batch)
        values, rep = self.model.apply(params, obs, method="encode")
        if self.config.dec_actor:
            out = self.model.apply(params, None, rep, obs, method="decode")
            noise = self._noise(key, out.shape[:-1], deterministic)
            actions, logp = self._choose(params, out, avail, noise, deterministic)
            return actions, logp, values

        # Attention over a cache costs its length: decode in segments of DECODE_SEGMENT
        # agents, padding the caches to each segment's end, instead of over all N from the start.
        n = self.spec.n_agents
        segments = tuple(range(DECODE_SEGMENT, n, DECODE_SEGMENT))
        queries, caches = self.model.apply(params, rep, segments[0] if segments else n, method="init_decode")

        # Loop-invariant work stays outside the scan: the token table and the cross-attention queries.
        table = self.model.apply(params, method="token_table") if self.spec.discrete else None

        def decode_step(prev, i, inputs, caches):
            rep_i, q_i = inputs
            return self.model.apply(params, prev, q_i, rep_i, caches, i, table, method="decode_step")

        def grow(caches, length):
            pad = lambda c: jnp.pad(c, ((0, 0), (0, length - c.shape[1]), (0, 0)))
            return jax.tree.map(pad, caches)

        actions, logp = self.autoregress(params, (rep, queries), caches, decode_step, avail, key, deterministic,
                                         segments, grow)
        return actions, logp, values
