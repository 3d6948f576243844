"""RWKV-4, -5 and -6 blocks in Flax linen, over the agent axis.

Every module computes the same answer in two forms: ``__call__(x)`` runs the whole sequence ``[B, T, C]``
at once (token shift by padding, the WKV operator of ``jax_mat.ops.wkv`` over ``T``), and ``step(x_t,
state)`` one position ``[B, C]`` with a carried O(1) state (the previous position's input of each
time-mix and channel-mix, and the WKV state), for recurrent decoding. ``segment(x, state)`` is one
optimisation of the parallel form: a stretch ``[B, S, C]`` continuing from such a state, which lets
MARWKV's ``act`` stream its encoder a segment of agents at a time (``MARWKVConfig.act_segment``; its
gain is measured in docs/benchmarks.md).

``T`` is the agent axis: agent ``i`` sees agents ``< i`` through the token
shift ("time shift", zero for agent 0) and the WKV recurrence.

Versions (``C`` width, ``H`` heads of size ``N = C / H``):

* **v4**, exactly as upstream MARWKV (``marwkv_v4.py``): bias-free LayerNorms
  ``ln1``, ``ln2`` and a final ``ln_f``; time-mix ``lerp(x, prev, time_mix_*)``
  -> ``k, v, r``; ``output(sigmoid(r) * wkv4(time_decay, time_first, k, v))``;
  channel-mix ``sigmoid(receptance(xr)) * value(relu(key(xk))^2)``, hidden 4C.
* **v5** ("Eagle", RWKV-LM ``RWKV_TimeMix_RWKV5`` of RWKV 5.2; upstream's v5 file
  computes no WKV at all and is not followed): LayerNorms with bias; the
  time-mix of v4 plus a gate ``g``; ``output(GroupNorm_H(wkv5(r, k, v,
  time_decay, time_faaaa)) * silu(g))`` with a static per-channel decay
  ``exp(-exp(time_decay))`` ``[H, N]`` and bonus ``time_faaaa`` ``[H, N]``.
  GroupNorm has one group per head and eps ``6.4e-4``, which is RWKV-LM's
  ``GroupNorm(H, C, eps=1e-5)(y / head_size_divisor)`` with the divisor 8
  folded into eps (normalising ``y / 8`` with eps ``e`` equals normalising
  ``y`` with eps ``64 e``), and the same eps as RWKV-LM's v6. The
  channel-mix is v4's (hidden 4C, as RWKV-LM's model code defaults to and
  upstream's v5 file uses; RWKV-LM's v5 train script passes 3.5C).
* **v6**, as upstream MARWKV (``marwkv_v6.py``, float32 throughout): ``ln0`` in
  every block; data-dependent token shift (``time_maa_w1`` ``[C, 160]``,
  ``time_maa_w2`` ``[5, 32, C]``), data-dependent decay ``time_decay +
  tanh(xw @ time_decay_w1) @ time_decay_w2`` (LoRA width 64), gate, and
  ``GroupNorm(H, C, eps=6.4e-4)``; channel-mix hidden ``int(3.5 C) // 32 * 32``.

Parameter names follow upstream's (v4's ``key_proj``/``time_mix_key`` appear
as ``key``/``time_mix_k``); ``(1, 1, C)`` vectors are stored as ``[C]``.
Initialisation follows upstream MARWKV for v4 and v6 and RWKV-LM for v5.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_mat.networks import initializers
from jax_mat.networks.layers import GroupNorm
from jax_mat.ops import wkv as wkv_ops

VERSIONS = (4, 5, 6)
LN_EPS = 1e-5
GROUP_NORM_EPS = 1e-5 * 8**2
MAA_LORA = 32  # v6 token-shift LoRA width per mixed input (5 inputs: w, k, v, r, g)
DECAY_LORA = 64  # v6 decay LoRA width


def ffn_dim(version: int, n_embd: int) -> int:
    """Channel-mix hidden width: 4C (v4, v5) or ``int(3.5 C) // 32 * 32`` (v6)."""
    return int(n_embd * 3.5) // 32 * 32 if version == 6 else 4 * n_embd


def time_shift(x: jax.Array, prev: jax.Array | None = None) -> jax.Array:
    """``[B, T, C]`` -> the previous position's ``x``; position 0 gets ``prev`` ``[B, C]`` (zeros when ``None``)."""
    if prev is None:
        return jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    return jnp.concatenate([prev[:, None].astype(x.dtype), x[:, :-1]], axis=1)


def lerp(x: jax.Array, prev: jax.Array, mix: jax.Array) -> jax.Array:
    """v4/v5 token mixing: ``x * mix + prev * (1 - mix)``."""
    return x * mix + prev * (1 - mix)


class BlockState(NamedTuple):
    """A block's recurrent state for ``step``.

    ``att_x``, ``ffn_x``: ``[B, C]`` the previous position's (normalised) input
    of the time-mix and the channel-mix; ``wkv``: ``WKV4State`` (v4) or
    ``[B, H, N, N]`` (v5, v6).
    """

    att_x: jax.Array
    wkv: Any
    ffn_x: jax.Array


def initial_state(version: int, batch: int, n_embd: int, n_head: int, dtype=jnp.float32) -> BlockState:
    """The state before position 0 (zero previous inputs, empty WKV state)."""
    zeros = jnp.zeros((batch, n_embd), dtype)
    if version == 4:
        state = wkv_ops.wkv4_init_state(batch, n_embd, jnp.promote_types(dtype, jnp.float32))
    else:
        state = wkv_ops.wkv6_init_state(batch, n_head, n_embd // n_head, jnp.promote_types(dtype, jnp.float32))
    return BlockState(zeros, state, zeros)


def initial_states(version: int, n_layer: int, batch: int, n_embd: int, n_head: int) -> list[BlockState]:
    """One ``initial_state`` per block of an ``RWKVStack``."""
    return [initial_state(version, batch, n_embd, n_head) for _ in range(n_layer)]


# --------------------------------------------------------------------------- #
# Initialisers                                                                  #
# --------------------------------------------------------------------------- #


def _ratios(layer_id: int, n_layer: int, single_layer_ratio: float) -> tuple[float, float]:
    """RWKV's ``ratio_0_to_1`` (``single_layer_ratio`` when there is one layer) and ``ratio_1_to_almost0``."""
    r01 = layer_id / (n_layer - 1) if n_layer > 1 else single_layer_ratio
    return r01, 1.0 - layer_id / n_layer


def _channel_fraction(c: int) -> jax.Array:
    """``ddd[i] = i / C``."""
    return jnp.arange(c, dtype=jnp.float32) / c


def _channel_position(c: int) -> jax.Array:
    """``n / (C - 1)``, 0 to 1 over the channels."""
    return jnp.arange(c, dtype=jnp.float32) / max(c - 1, 1)


def _const(value: jax.Array):
    def init(key, shape, dtype=jnp.float32):
        return jnp.asarray(value, dtype).reshape(shape)

    return init


def _zigzag(c: int) -> jax.Array:
    return ((jnp.arange(c) + 1) % 3 - 1).astype(jnp.float32)


def _rwkv_orthogonal(key, shape, dtype=jnp.float32):
    """RWKV's Linear init: orthogonal, gain ``sqrt(out / in)`` when widening."""
    d_in, d_out = shape
    gain = math.sqrt(d_out / d_in) if d_out > d_in else 1.0
    return initializers.orthogonal(gain)(key, shape, dtype)


_TORCH_DEFAULT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # U(+-1/sqrt(in))


def _linear(features: int, init, name: str) -> nn.Dense:
    return nn.Dense(features, use_bias=False, kernel_init=init, name=name)


def _small_uniform(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -1e-4, 1e-4)


# --------------------------------------------------------------------------- #
# Time mixing                                                                   #
# --------------------------------------------------------------------------- #


class TimeMix4(nn.Module):
    """RWKV-4 time-mix (upstream ``TimeMixing``)."""

    n_embd: int
    layer_id: int
    n_layer: int
    wkv_impl: str = "auto"

    def setup(self):
        c = self.n_embd
        r01, r1a0 = _ratios(self.layer_id, self.n_layer, 1.0)
        ddd = _channel_fraction(c)
        decay = -5 + 8 * _channel_position(c) ** (0.7 + 1.3 * r01)
        self.time_decay = self.param("time_decay", _const(decay), (c,))
        self.time_first = self.param("time_first", _const(math.log(0.3) + 0.5 * _zigzag(c)), (c,))
        self.time_mix_k = self.param("time_mix_k", _const(ddd**r1a0), (c,))
        self.time_mix_v = self.param("time_mix_v", _const(ddd**r1a0 + 0.3 * r01), (c,))
        self.time_mix_r = self.param("time_mix_r", _const(ddd ** (0.5 * r1a0)), (c,))
        zeros = nn.initializers.zeros
        self.key = _linear(c, zeros, "key")
        self.value = _linear(c, _rwkv_orthogonal, "value")
        self.receptance = _linear(c, zeros, "receptance")
        self.output = _linear(c, zeros, "output")

    def _project(self, x, prev):
        k = self.key(lerp(x, prev, self.time_mix_k))
        v = self.value(lerp(x, prev, self.time_mix_v))
        r = jax.nn.sigmoid(self.receptance(lerp(x, prev, self.time_mix_r)))
        return k, v, r

    def __call__(self, x):
        k, v, r = self._project(x, time_shift(x))
        return self.output(r * wkv_ops.wkv4(self.time_decay, self.time_first, k, v, impl=self.wkv_impl))

    def step(self, x, prev, state):
        k, v, r = self._project(x, prev)
        y, state = wkv_ops.wkv4_step(self.time_decay, self.time_first, k, v, state)
        return self.output(r * y), state

    def segment(self, x, prev, state):
        k, v, r = self._project(x, time_shift(x, prev))
        y, state = wkv_ops.wkv4_segment(self.time_decay, self.time_first, k, v, state)
        return self.output(r * y), state


class MatrixTimeMix(nn.Module):
    """RWKV-5.2 and RWKV-6 time-mix: a multi-head matrix-valued WKV state, a SiLU gate, a per-head GroupNorm.

    v5 (RWKV-LM ``RWKV_TimeMix_RWKV5``) mixes tokens with static ``time_mix_*`` and decays by a static
    ``time_decay`` ``[H, N]``; v6 (upstream MARWKV ``RWKV_Tmix``, RWKV-LM ``RWKV_Tmix_x060``) mixes them
    data-dependently (``time_maa_*`` and a LoRA) and decays by ``time_decay + LoRA(x)`` at each position.
    """

    version: int  # 5 or 6
    n_embd: int
    n_head: int
    layer_id: int
    n_layer: int
    wkv_impl: str = "auto"

    def setup(self):
        # Each version declares its parameters in upstream's order (their initial values depend on it).
        c, h = self.n_embd, self.n_head
        r01, r1a0 = _ratios(self.layer_id, self.n_layer, 0.0)
        ddd, pos = _channel_fraction(c), _channel_position(c)
        if self.version == 5:
            self.time_mix_k = self.param("time_mix_k", _const(ddd**r1a0), (c,))
            self.time_mix_v = self.param("time_mix_v", _const(ddd**r1a0 + 0.3 * r01), (c,))
            self.time_mix_r = self.param("time_mix_r", _const(ddd ** (0.5 * r1a0)), (c,))
            self.time_mix_g = self.param("time_mix_g", _const(ddd ** (0.5 * r1a0)), (c,))
            decay = -6 + 5 * pos ** (0.7 + 1.3 * r01)
            self.time_decay = self.param("time_decay", _const(decay), (h, c // h))
            self.time_faaaa = self.param("time_faaaa", _const(r01 * (1 - pos) + 0.1 * _zigzag(c)), (h, c // h))
            self.receptance = _linear(c, _rwkv_orthogonal, "receptance")
            self.key = _linear(c, _rwkv_orthogonal, "key")
            self.value = _linear(c, _rwkv_orthogonal, "value")
            self.gate = _linear(c, _rwkv_orthogonal, "gate")
            self.output = _linear(c, nn.initializers.zeros, "output")
            layer_scale = ((1 + self.layer_id) / self.n_layer) ** 0.7
            self.ln_x = GroupNorm(h, GROUP_NORM_EPS, scale_init=nn.initializers.constant(layer_scale))
            return
        for name, value in (
            ("x", 1 - ddd**r1a0),
            ("w", 1 - ddd**r1a0),
            ("k", 1 - ddd**r1a0),
            ("v", 1 - (ddd**r1a0 + 0.3 * r01)),
            ("r", 1 - ddd ** (0.5 * r1a0)),
            ("g", 1 - ddd ** (0.5 * r1a0)),
        ):
            setattr(self, f"time_maa_{name}", self.param(f"time_maa_{name}", _const(value), (c,)))
        self.time_maa_w1 = self.param("time_maa_w1", _small_uniform, (c, 5 * MAA_LORA))
        self.time_maa_w2 = self.param("time_maa_w2", _small_uniform, (5, MAA_LORA, c))
        self.time_decay = self.param("time_decay", _const(-6 + 5 * pos ** (0.7 + 1.3 * r01)), (c,))
        self.time_decay_w1 = self.param("time_decay_w1", _small_uniform, (c, DECAY_LORA))
        self.time_decay_w2 = self.param("time_decay_w2", _small_uniform, (DECAY_LORA, c))
        self.time_faaaa = self.param("time_faaaa", _const(r01 * (1 - pos) + 0.1 * _zigzag(c)), (h, c // h))
        for name in ("receptance", "key", "value", "output", "gate"):
            setattr(self, name, _linear(c, _TORCH_DEFAULT, name))
        self.ln_x = GroupNorm(h, GROUP_NORM_EPS)

    def _project(self, x, prev):
        """``r, k, v``, the decay (v5: the static ``[H, N]``; v6: ``[..., C]`` per position) and the gate."""
        if self.version == 5:
            r = self.receptance(lerp(x, prev, self.time_mix_r))
            k = self.key(lerp(x, prev, self.time_mix_k))
            v = self.value(lerp(x, prev, self.time_mix_v))
            g = nn.silu(self.gate(lerp(x, prev, self.time_mix_g)))
            return r, k, v, self.time_decay, g
        xx = prev - x
        m = jnp.tanh((x + xx * self.time_maa_x) @ self.time_maa_w1)
        m = m.reshape(*m.shape[:-1], 5, MAA_LORA)
        mw, mk, mv, mr, mg = jnp.moveaxis(jnp.einsum("...fe,fec->...fc", m, self.time_maa_w2), -2, 0)
        xw = x + xx * (self.time_maa_w + mw)
        r = self.receptance(x + xx * (self.time_maa_r + mr))
        k = self.key(x + xx * (self.time_maa_k + mk))
        v = self.value(x + xx * (self.time_maa_v + mv))
        g = nn.silu(self.gate(x + xx * (self.time_maa_g + mg)))
        w = self.time_decay + jnp.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2
        return r, k, v, w, g

    def __call__(self, x):
        r, k, v, decay, g = self._project(x, time_shift(x))
        wkv = wkv_ops.wkv5 if self.version == 5 else wkv_ops.wkv6
        return self.output(self.ln_x(wkv(r, k, v, decay, self.time_faaaa, impl=self.wkv_impl)) * g)

    def step(self, x, prev, state):
        r, k, v, decay, g = self._project(x, prev)
        wkv_step = wkv_ops.wkv5_step if self.version == 5 else wkv_ops.wkv6_step
        y, state = wkv_step(r, k, v, decay, self.time_faaaa, state)
        return self.output(self.ln_x(y) * g), state

    def segment(self, x, prev, state):
        r, k, v, decay, g = self._project(x, time_shift(x, prev))
        wkv_segment = wkv_ops.wkv5_segment if self.version == 5 else wkv_ops.wkv6_segment
        y, state = wkv_segment(r, k, v, decay, self.time_faaaa, state)
        return self.output(self.ln_x(y) * g), state




# --------------------------------------------------------------------------- #
# Channel mixing                                                                #
# --------------------------------------------------------------------------- #


class ChannelMix(nn.Module):
    """``sigmoid(receptance(xr)) * value(relu(key(xk))^2)`` with token-shifted ``xk``, ``xr``.

    v4/v5 mix as ``lerp(x, prev, time_mix_*)`` (RWKV-4's form), v6 as
    ``x + (prev - x) * time_maa_*`` (RWKV-6's form; the same family with
    ``time_maa = 1 - time_mix``), each with its own upstream parameter names.
    """

    n_embd: int
    layer_id: int
    n_layer: int
    version: int

    def setup(self):
        c = self.n_embd
        _, r1a0 = _ratios(self.layer_id, self.n_layer, 0.0)
        ddd = _channel_fraction(c)
        if self.version == 6:
            self.time_maa_k = self.param("time_maa_k", _const(1 - ddd**r1a0), (c,))
            self.time_maa_r = self.param("time_maa_r", _const(1 - ddd**r1a0), (c,))
            wide, narrow = _TORCH_DEFAULT, _TORCH_DEFAULT
        else:
            self.time_mix_k = self.param("time_mix_k", _const(ddd**r1a0), (c,))
            self.time_mix_r = self.param("time_mix_r", _const(ddd**r1a0), (c,))
            wide, narrow = _rwkv_orthogonal, nn.initializers.zeros
        self.key = _linear(ffn_dim(self.version, c), wide, "key")
        self.value = _linear(c, narrow, "value")
        self.receptance = _linear(c, narrow, "receptance")

    def _mix(self, x, prev):
        if self.version == 6:
            xx = prev - x
            return x + xx * self.time_maa_k, x + xx * self.time_maa_r
        return lerp(x, prev, self.time_mix_k), lerp(x, prev, self.time_mix_r)

    def step(self, x, prev):
        xk, xr = self._mix(x, prev)
        return jax.nn.sigmoid(self.receptance(xr)) * self.value(jnp.square(nn.relu(self.key(xk))))

    def __call__(self, x):
        return self.step(x, time_shift(x))


# --------------------------------------------------------------------------- #
# Blocks and the stack                                                          #
# --------------------------------------------------------------------------- #


class Block(nn.Module):
    """``[ln0 (v6)] ; x += att(ln1(x)) ; x += ffn(ln2(x))``."""

    version: int
    n_embd: int
    n_head: int
    layer_id: int
    n_layer: int
    wkv_impl: str = "auto"

    def setup(self):
        bias = self.version != 4  # v4's LayerNorms are bias-free
        if self.version == 6:
            self.ln0 = nn.LayerNorm(epsilon=LN_EPS)
        self.ln1 = nn.LayerNorm(epsilon=LN_EPS, use_bias=bias)
        self.ln2 = nn.LayerNorm(epsilon=LN_EPS, use_bias=bias)
        if self.version == 4:  # v4's WKV is per channel: no heads
            self.att = TimeMix4(self.n_embd, self.layer_id, self.n_layer, self.wkv_impl)
        else:
            self.att = MatrixTimeMix(self.version, self.n_embd, self.n_head, self.layer_id, self.n_layer, self.wkv_impl)
        self.ffn = ChannelMix(self.n_embd, self.layer_id, self.n_layer, self.version)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, T, C]`` -> ``[B, T, C]``."""
        if self.version == 6:
            x = self.ln0(x)
        x = x + self.att(self.ln1(x))
        return x + self.ffn(self.ln2(x))

    def step(self, x: jax.Array, state: BlockState) -> tuple[jax.Array, BlockState]:
        """``[B, C]`` at one position -> ``[B, C]`` and the state after it."""
        if self.version == 6:
            x = self.ln0(x)
        h = self.ln1(x)
        a, wkv = self.att.step(h, state.att_x, state.wkv)
        x = x + a
        f = self.ln2(x)
        return x + self.ffn.step(f, state.ffn_x), BlockState(h, wkv, f)

    def segment(self, x: jax.Array, state: BlockState) -> tuple[jax.Array, BlockState]:
        """``[B, S, C]`` continuing from ``state`` -> ``[B, S, C]`` and the state after position ``S - 1``."""
        if self.version == 6:
            x = self.ln0(x)
        h = self.ln1(x)
        a, wkv = self.att.segment(h, state.att_x, state.wkv)
        x = x + a
        f = self.ln2(x)
        return x + self.ffn.step(f, time_shift(f, state.ffn_x)), BlockState(h[:, -1], wkv, f[:, -1])


class RWKVStack(nn.Module):
    """``n_layer`` blocks, then (v4 only) the bias-free ``ln_f``."""

    version: int
    n_layer: int
    n_embd: int
    n_head: int
    wkv_impl: str = "auto"

    def setup(self):
        if self.version not in VERSIONS:
            raise ValueError(f"unknown RWKV version {self.version!r}; allowed: 4, 5, 6")
        self.blocks = [
            Block(self.version, self.n_embd, self.n_head, i, self.n_layer, self.wkv_impl) for i in range(self.n_layer)
        ]
        if self.version == 4:
            self.ln_f = nn.LayerNorm(epsilon=LN_EPS, use_bias=False)

    def _final(self, x):
        return self.ln_f(x) if self.version == 4 else x

    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, T, C]`` -> ``[B, T, C]``."""
        for block in self.blocks:
            x = block(x)
        return self._final(x)

    def step(self, x: jax.Array, states: list[BlockState]) -> tuple[jax.Array, list[BlockState]]:
        """One position ``[B, C]`` with one ``BlockState`` per block."""
        return self._advance("step", x, states)

    def segment(self, x: jax.Array, states: list[BlockState]) -> tuple[jax.Array, list[BlockState]]:
        """``[B, S, C]`` positions continuing from one ``BlockState`` per block."""
        return self._advance("segment", x, states)

    def _advance(self, method: str, x, states):
        new_states = []
        for block, state in zip(self.blocks, states):
            x, state = getattr(block, method)(x, state)
            new_states.append(state)
        return self._final(x), new_states
