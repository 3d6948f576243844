"""The policy protocol shared by every network, and its input checks.

A ``Policy`` is a plain object built from an ``EnvSpec`` and a network
configuration; all its methods are pure functions of ``params`` and arrays,
batched over environments:

* ``init(key) -> params``
* ``act(params, obs, avail, key, deterministic, world_state=None) -> (actions, logp, values)``
  samples (or takes the mode of) every agent's action, autoregressively for
  the sequence models.
* ``evaluate(params, obs, actions, avail, world_state=None) -> (logp, entropy, values)``
  scores given actions in one teacher-forced pass.
* ``value(params, obs, world_state=None) -> values``: the critic alone (bootstrap values).
* ``param_groups``: names of parameter groups that train with optimizers of their own (MAPPO's and HAPPO's
  actor and critic), each leaf's group given by ``param_labels(params)``; ``()``: one optimizer for all.

Shapes: ``obs`` ``[B, N, O]``; ``world_state`` ``[B, S]``, read by
centralised critics (MAPPO, HAPPO; ``None`` is refused there) and ignored by
the MAT family, whose critic is the observation encoder; ``avail``
``[B, N, A]`` (ignored for continuous actions, may be ``None``); ``actions`` ``[B, N]`` int32 (discrete) or
``[B, N, A]`` float32 (continuous); ``logp`` and ``entropy`` ``[B, N, K]`` with
``K = 1`` for discrete and ``K = A`` for continuous actions (upstream clips the
ratio per action dimension); ``values`` ``[B, N]``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jax_mat.envs.base import EnvSpec
from jax_mat.networks import heads

Params = Any


class Policy(Protocol):
    spec: EnvSpec
    param_groups: tuple[str, ...]

    def init(self, key: jax.Array) -> Params: ...

    def act(
        self,
        params: Params,
        obs: jax.Array,
        avail: jax.Array | None,
        key: jax.Array,
        deterministic: bool = False,
        world_state: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array]: ...

    def evaluate(
        self, params: Params, obs: jax.Array, actions: jax.Array, avail: jax.Array | None,
        world_state: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array]: ...

    def value(self, params: Params, obs: jax.Array, world_state: jax.Array | None = None) -> jax.Array: ...

    def param_labels(self, params: Params) -> Any: ...


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_obs(spec: EnvSpec, obs) -> None:
    if obs.ndim != 3 or obs.shape[1:] != (spec.n_agents, spec.obs_dim):
        raise ValueError(
            f"obs must have shape [batch, {spec.n_agents} agents, {spec.obs_dim} obs], got {tuple(obs.shape)}"
        )


def check_avail(spec: EnvSpec, avail, batch: int) -> None:
    """Shape check always; the every-agent-has-an-action check where ``avail`` is concrete.

    Under ``jit`` the values are unknown at trace time; environments guarantee
    the invariant there (an agent always has its no-op), and the check runs on
    every concrete input a user passes directly.
    """
    if not spec.discrete:
        return
    if avail is None:
        raise ValueError("avail is required for discrete actions: shape [batch, agents, actions]")
    expected = (batch, spec.n_agents, spec.action_dim)
    if tuple(avail.shape) != expected:
        raise ValueError(f"avail must have shape {list(expected)} [batch, agents, actions], got {tuple(avail.shape)}")
    if _is_concrete(avail):
        empty = np.argwhere(~(np.asarray(avail) > 0).any(axis=-1))
        if empty.size:
            b, n = empty[0]
            raise ValueError(
                f"avail has no available action for agent {n} in batch row {b} "
                f"({len(empty)} agent rows in all): every agent needs at least one"
            )


def check_actions(spec: EnvSpec, actions, batch: int) -> None:
    if spec.discrete:
        expected = (batch, spec.n_agents)
        if tuple(actions.shape) != expected or not jnp.issubdtype(actions.dtype, jnp.integer):
            raise ValueError(
                f"discrete actions must be integers of shape {list(expected)} [batch, agents], "
                f"got {actions.dtype} {tuple(actions.shape)}"
            )
    else:
        expected = (batch, spec.n_agents, spec.action_dim)
        if tuple(actions.shape) != expected:
            raise ValueError(
                f"continuous actions must have shape {list(expected)} [batch, agents, action_dim], "
                f"got {tuple(actions.shape)}"
            )


def shift_actions(spec: EnvSpec, actions: jax.Array) -> jax.Array:
    """The decoder's input: agent ``i`` sees agent ``i - 1``'s action.

    Discrete: ``[B, N]`` int32 tokens, 0 the start token and ``1 + a`` action
    ``a``. Continuous: ``[B, N, A]`` with zeros for agent 0.
    """
    if spec.discrete:
        start = jnp.zeros_like(actions[:, :1])
        return jnp.concatenate([start, actions[:, :-1] + 1], axis=1)
    return jnp.concatenate([jnp.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)


def start_tokens(spec: EnvSpec, batch: int) -> jax.Array:
    """Agent 0's decoder input: ``[B]`` zeros (discrete) or ``[B, A]`` zeros."""
    if spec.discrete:
        return jnp.zeros((batch,), jnp.int32)
    return jnp.zeros((batch, spec.action_dim), jnp.float32)


def next_token(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """The next agent's decoder input from this agent's action."""
    return action + 1 if spec.discrete else action


class EncoderDecoderPolicy:
    """What MAT and MARWKV share behind the ``Policy`` protocol.

    ``model`` is a Flax module with ``__call__(obs, shifted)`` (initialisation),
    ``encode(obs) -> (values [B, N], rep [B, N, D])`` and
    ``decode(shifted, rep, obs) -> [B, N, A]`` (teacher-forced logits or means),
    and a ``log_std`` ``[A]`` parameter for continuous actions. Subclasses
    implement ``act``, usually with ``autoregress``.
    """

    spec: EnvSpec
    model: Any
    param_groups: tuple[str, ...] = ()  # one optimizer for every parameter

    def init(self, key: jax.Array) -> Params:
        obs = jnp.zeros((1, self.spec.n_agents, self.spec.obs_dim), jnp.float32)
        shifted = jnp.repeat(start_tokens(self.spec, 1)[:, None], self.spec.n_agents, axis=1)
        return self.model.init(key, obs, shifted)

    def value(self, params, obs, world_state=None):
        """``[B, N, O]`` -> ``[B, N]`` normalised values (the encoder alone; ``world_state`` is unused)."""
        return self.model.apply(params, obs, method="encode")[0]

    def _dist(self, params, out, avail):
        if self.spec.discrete:
            return heads.categorical(out, avail)
        return heads.gaussian(out, params["params"]["log_std"])

    def evaluate(self, params, obs, actions, avail, world_state=None):
        batch = obs.shape[0]
        check_obs(self.spec, obs)
        check_actions(self.spec, actions, batch)
        check_avail(self.spec, avail, batch)
        values, rep = self.model.apply(params, obs, method="encode")
        out = self.model.apply(params, shift_actions(self.spec, actions), rep, obs, method="decode")
        dist = self._dist(params, out, avail)
        logp, entropy = dist.log_prob(actions), dist.entropy()
        if self.spec.discrete:
            logp, entropy = logp[..., None], entropy[..., None]
        return logp, entropy, values

    def _noise(self, key: jax.Array, shape: tuple[int, ...], deterministic: bool) -> jax.Array:
        """Sampling noise ``shape + [A]`` for ``_choose`` (an empty trailing axis when deterministic)."""
        if deterministic:
            return jnp.zeros((*shape, 0))
        return heads.sampling_noise(self.spec.discrete, key, (*shape, self.spec.action_dim))

    def _choose(self, params, out, avail, noise, deterministic):
        """Action and its per-dimension log-prob from one decoder output and its ``_noise``."""
        dist = self._dist(params, out, avail)
        action = dist.mode() if deterministic else dist.sample_with(noise)
        logp = dist.log_prob(action)
        return action, (logp[..., None] if self.spec.discrete else logp)

    def autoregress(
        self,
        params: Params,
        per_agent: Any,
        decoder_state: Any,
        decode_step: Callable,
        avail: jax.Array | None,
        key: jax.Array,
        deterministic: bool,
        segments: tuple[int, ...] = (),
        grow: Callable | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Choose agents' actions in order, one ``lax.scan`` step per agent.

        Args:
          per_agent: a pytree of ``[B, N, ...]`` arrays; step ``i`` gets their
            ``[:, i]`` slices.
          decoder_state: the decoder's carried state (KV caches, recurrent state).
          decode_step: ``(prev_token, i, per_agent_i, decoder_state) -> (out [B, A], decoder_state)``
            with ``prev_token`` agent ``i - 1``'s action as decoder input.
          segments: increasing positions ``0 < s_1 < ... < N`` at which to end
            one scan and start the next, after ``decoder_state = grow(decoder_state, end)``
            with ``end`` the next segment's end. A decoder whose step costs
            grow with the state's size (a KV cache) keeps the state as short
            as the positions reached so far.
        Returns:
          actions ``[B, N]`` (or ``[B, N, A]``) and their log-probs ``[B, N, K]``.
        """
        swap = lambda x: jnp.swapaxes(x, 0, 1)  # [B, N, ...] <-> [N, B, ...]
        per_agent = jax.tree.map(swap, per_agent)
        n, batch = jax.tree.leaves(per_agent)[0].shape[:2]
        avail_n = swap(avail) if self.spec.discrete else jnp.zeros((n, batch, 0))
        xs = (jnp.arange(n), self._noise(key, (n, batch), deterministic), per_agent, avail_n)

        def step(carry, x):
            prev, decoder_state = carry
            i, noise, inputs, avail_i = x
            out, decoder_state = decode_step(prev, i, inputs, decoder_state)
            action, logp = self._choose(params, out, avail_i if self.spec.discrete else None, noise, deterministic)
            return (next_token(self.spec, action), decoder_state), (action, logp)

        bounds = (0, *segments, n)
        carry, outs = (start_tokens(self.spec, batch), decoder_state), []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            if start:
                carry = (carry[0], grow(carry[1], stop))
            carry, out = jax.lax.scan(step, carry, jax.tree.map(lambda x: x[start:stop], xs))
            outs.append(out)
        actions, logp = jax.tree.map(lambda *parts: jnp.concatenate(parts), *outs)
        return swap(actions), swap(logp)
