"""The baselines' MLP actor-critics: MAPPO (Yu et al., 2022) and HAPPO (Kuba et al., ICLR 2022).

Built as HARL / on-policy MAPPO build their feed-forward networks: an input
LayerNorm ("feature normalisation"), then ``n_layers`` blocks of
``Linear -> ReLU -> LayerNorm`` of width ``hidden`` (orthogonal init, gain
``sqrt(2)``, zero biases), and

* an actor head ``Linear(hidden, A)`` with gain 0.01: masked categorical
  logits, or Gaussian means with a free ``log_std`` ``[A]`` and standard
  deviation ``0.5 * sigmoid(log_std)`` (HARL's default ``std_x_coef = 1``,
  ``std_y_coef = 0.5``, the same head as MAT's);
* a critic head ``Linear(hidden, 1)`` with gain 1.

Two arrangements (``MLPConfig``):

* MAPPO (``share_actor=True, agent_critic=True``): one actor shared by all
  agents, fed each agent's observation with its one-hot id appended (unless
  the environment's observations already end with it, ``EnvSpec.agent_id_in_obs``,
  as SMAC's do); a critic per agent on the agent-specific global state
  ``[state, own obs, one-hot id]`` (MAPPO's "AS" state).
* HAPPO (``share_actor=False, agent_critic=False``): one actor per agent
  (parameters stacked on a leading ``[N]`` axis and vmapped, never a Python
  loop over agents) on its own observation; one critic ``V(state)`` on the
  environment's global state (HARL's "EP" state), the same value for every
  agent.

Unlike MAT's per-dimension ratios, log-probabilities and entropies are summed
over action dimensions (``K = 1``): MAPPO and HAPPO clip each agent's joint
ratio (HARL's ``action_aggregation="prod"``).

Shapes: ``B`` batch, ``N`` agents, ``O`` observation, ``S`` state, ``A``
actions (or action dimensions).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_mat.envs.base import EnvSpec
from jax_mat.networks import heads, layers
from jax_mat.networks import policy as policy_lib

CRITIC_GAIN = 1.0


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Network options; the defaults are MAPPO's on SMAC (64 wide, two hidden layers)."""

    hidden: int = 64
    n_layers: int = 2
    share_actor: bool = True  # MAPPO: one actor (+ agent id); HAPPO: one per agent
    agent_critic: bool = True  # MAPPO: V_i([state, obs_i, id_i]); HAPPO: V(state)
    append_agent_id: bool = True  # MAPPO appends the one-hot id itself unless the observations carry it

    def __post_init__(self):
        for name in ("hidden", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"MLP {name} must be >= 1, got {getattr(self, name)}")


class MLPBase(nn.Module):
    """``LayerNorm``, then ``n_layers`` x (``Linear -> ReLU -> LayerNorm``): ``[..., in]`` -> ``[..., hidden]``."""

    hidden: int
    n_layers: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = layers.layer_norm("feature_norm")(x)
        for i in range(self.n_layers):
            x = layers.layer_norm(f"ln{i}")(jax.nn.relu(layers.dense(self.hidden, layers.RELU_GAIN, name=f"fc{i}")(x)))
        return x


class Actor(nn.Module):
    """``[..., in]`` -> logits or means ``[..., A]``; continuous actors also own ``log_std`` ``[A]``."""

    action_dim: int
    discrete: bool
    hidden: int
    n_layers: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.discrete:
            self.param("log_std", nn.initializers.ones, (self.action_dim,))
        x = MLPBase(self.hidden, self.n_layers, name="base")(x)
        return layers.dense(self.action_dim, layers.HEAD_GAIN, name="out")(x)


class Critic(nn.Module):
    """``[..., in]`` -> values ``[...]``."""

    hidden: int
    n_layers: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = MLPBase(self.hidden, self.n_layers, name="base")(x)
        return layers.dense(1, CRITIC_GAIN, name="out")(x)[..., 0]


def _with_agent_ids(x: jax.Array) -> jax.Array:
    """``[B, N, F]`` -> ``[B, N, F + N]``, each agent's one-hot id appended."""
    b, n, _ = x.shape
    return jnp.concatenate([x, jnp.broadcast_to(jnp.eye(n, dtype=x.dtype), (b, n, n))], axis=-1)


class MLPActorCritic(nn.Module):
    """The actor(s) and the critic of ``MLPConfig``; parameters ``actor`` or ``actors`` (stacked ``[N, ...]``) and ``critic``."""

    n_agents: int
    action_dim: int
    discrete: bool
    config: MLPConfig

    def setup(self):
        c = self.config
        if c.share_actor:
            self.actor = Actor(self.action_dim, self.discrete, c.hidden, c.n_layers)
        else:
            per_agent = nn.vmap(
                Actor, in_axes=1, out_axes=1, variable_axes={"params": 0}, split_rngs={"params": True},
                axis_size=self.n_agents,
            )
            self.actors = per_agent(self.action_dim, self.discrete, c.hidden, c.n_layers)
        self.critic = Critic(c.hidden, c.n_layers)

    def __call__(self, obs: jax.Array, world_state: jax.Array):
        """Initialisation entry point: touches every parameter."""
        return self.actor_out(obs), self.values(obs, world_state)

    def _ids(self, x: jax.Array) -> jax.Array:
        return _with_agent_ids(x) if self.config.append_agent_id else x

    def actor_out(self, obs: jax.Array) -> jax.Array:
        """``[B, N, O]`` -> ``[B, N, A]``."""
        if self.config.share_actor:
            return self.actor(self._ids(obs))
        return self.actors(obs)

    def values(self, obs: jax.Array, world_state: jax.Array) -> jax.Array:
        """``obs`` ``[B, N, O]``, ``world_state`` ``[B, S]`` -> ``[B, N]``."""
        b, n, _ = obs.shape
        if self.config.agent_critic:
            per_agent_state = jnp.broadcast_to(world_state[:, None, :], (b, n, world_state.shape[-1]))
            return self.critic(self._ids(jnp.concatenate([per_agent_state, obs], axis=-1)))
        return jnp.broadcast_to(self.critic(world_state)[:, None], (b, n))


class MLPPolicy:
    """MAPPO's or HAPPO's actor-critic behind the ``Policy`` protocol.

    The critic needs the world state: ``act``, ``evaluate`` and ``value``
    take ``world_state`` ``[B, S]``. For HAPPO's sequential update the policy also
    exposes its parts: ``actors_of``/``critic_of`` and ``with_parts`` split
    and join the parameters, ``agent_scores`` scores one agent's actions
    with that agent's actor alone, ``critic_values`` runs the critic alone.
    """

    param_groups = ("actor", "critic")  # separate optimizers (each clips its own gradient norm)

    def __init__(self, spec: EnvSpec, config: MLPConfig = MLPConfig()):
        if spec.state_dim < 1:
            raise ValueError("MAPPO and HAPPO need a world state for their centralised critic; this environment has none")
        if spec.agent_id_in_obs:
            config = dataclasses.replace(config, append_agent_id=False)  # the observation already ends with it
        self.spec = spec
        self.config = config
        self.model = MLPActorCritic(spec.n_agents, spec.action_dim, spec.discrete, config)
        self._actor = Actor(spec.action_dim, spec.discrete, config.hidden, config.n_layers)
        self._critic = Critic(config.hidden, config.n_layers)

    # -- the Policy protocol ------------------------------------------------------------------- #

    def init(self, key: jax.Array):
        obs = jnp.zeros((1, self.spec.n_agents, self.spec.obs_dim), jnp.float32)
        world_state = jnp.zeros((1, self.spec.state_dim), jnp.float32)
        return self.model.init(key, obs, world_state)

    def act(self, params, obs, avail, key, deterministic=False, world_state=None):
        batch = obs.shape[0]
        self._check_inputs(obs, avail, world_state)
        dist = self._dist(params, self.model.apply(params, obs, method="actor_out"), avail)
        actions = dist.mode() if deterministic else dist.sample(key)
        return actions, self._joint(dist.log_prob(actions)), self.value(params, obs, world_state)

    def evaluate(self, params, obs, actions, avail, world_state=None):
        policy_lib.check_actions(self.spec, actions, obs.shape[0])
        self._check_inputs(obs, avail, world_state)
        dist = self._dist(params, self.model.apply(params, obs, method="actor_out"), avail)
        values = self.model.apply(params, obs, world_state, method="values")
        return self._joint(dist.log_prob(actions)), self._joint(dist.entropy()), values

    def value(self, params, obs, world_state=None):
        self._check_state(world_state, obs.shape[0])
        return self.model.apply(params, obs, world_state, method="values")

    # -- parameter groups and parts (optimizers, HAPPO) ---------------------------------------- #

    def param_labels(self, params):
        """Each leaf's group: ``"actor"`` for the actor(s) and their ``log_std``, ``"critic"`` for the critic."""
        return {"params": {part: jax.tree.map(lambda _: "critic" if part == "critic" else "actor", tree)
                           for part, tree in params["params"].items()}}

    def actors_of(self, params):
        """The per-agent actors' parameters, stacked ``[N, ...]`` (HAPPO's arrangement)."""
        return params["params"]["actors"]

    def critic_of(self, params):
        return params["params"]["critic"]

    def with_parts(self, params, actors, critic):
        """``params`` with the stacked actors and the critic replaced."""
        return {**params, "params": {**params["params"], "actors": actors, "critic": critic}}

    def agent_scores(self, actor_params, obs, actions, avail):
        """One agent's actions under its own actor: ``obs`` ``[R, O]``, ``actions`` ``[R]`` or ``[R, A]``,
        ``avail`` ``[R, A]`` (or None) -> logp and entropy, ``[R, 1]`` each."""
        out = self._actor.apply({"params": actor_params}, obs)
        log_std = actor_params.get("log_std")
        dist = heads.categorical(out, avail) if self.spec.discrete else heads.gaussian(out, log_std)
        return self._joint(dist.log_prob(actions)), self._joint(dist.entropy())

    def critic_values(self, critic_params, obs, world_state):
        """The critic alone: ``obs`` ``[R, N, O]``, ``world_state`` ``[R, S]`` -> ``[R, N]``."""
        params = {"params": {"critic": critic_params}}
        return self.model.apply(params, obs, world_state, method="values")

    # -- helpers -------------------------------------------------------------------------------- #

    def _dist(self, params, out, avail):
        if self.spec.discrete:
            return heads.categorical(out, avail)
        actor = params["params"]["actor" if self.config.share_actor else "actors"]
        return heads.gaussian(out, actor["log_std"])  # [A] shared, or [N, A] per agent

    def _joint(self, per_dim: jax.Array) -> jax.Array:
        """A log-prob or entropy summed over action dimensions, ``[..., 1]`` (K = 1)."""
        return per_dim[..., None] if self.spec.discrete else per_dim.sum(-1, keepdims=True)

    def _check_state(self, world_state, batch: int) -> None:
        expected = (batch, self.spec.state_dim)
        if world_state is None or tuple(world_state.shape) != expected:
            got = None if world_state is None else tuple(world_state.shape)
            raise ValueError(f"the critic needs world_state of shape {list(expected)} [batch, state], got {got}")

    def _check_inputs(self, obs, avail, world_state) -> None:
        policy_lib.check_obs(self.spec, obs)
        policy_lib.check_avail(self.spec, avail, obs.shape[0])
        self._check_state(world_state, obs.shape[0])

