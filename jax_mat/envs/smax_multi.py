"""Several SMAX maps as one task: units, actions and world state padded to common sizes.

``SmaxMultiEnv`` trains one policy on several maps at once (``env=smax_multi
env.maps=[3m,8m,2s3z,3s5z]``). Every map is padded to ``P_a`` allied agents and
``P_e`` enemies (by default the largest over the maps; ``env.pad_allies`` and
``env.pad_enemies`` set them explicitly, so that a held-out map can be padded to
a pretraining run's sizes), which gives all maps one ``EnvSpec`` and one network.

Padding (``PaddedSmax``), per map with ``n_a`` allies and ``n_e`` enemies:

* Agents: the ``n_a`` real allies first, then ``P_a - n_a`` padded agents. A
  padded agent is a permanently dead ally: all-zero observation, only "stop"
  available, ``active = 0`` (so the trainer's active masks keep it out of the
  policy and value losses), and its action is ignored. It comes last because
  MAT and MARWKV decode agents in order: the real agents' actions never
  depend on a padded agent's. MAT's encoder attends over every agent, padded
  ones included, exactly as upstream MAT attends to dead units.
* Observation (JaxMARL's "unit_list" layout: a feature block for each other
  ally, then one for each enemy, then the agent's own features): the ally
  blocks are padded to ``P_a - 1`` and the enemy blocks to ``P_e`` with zero
  blocks, which is how SMAX shows a dead unit. Real slots keep their values.
* Actions: ``A = 5 + P_e``; attacks on padded enemies are never available
  (and are turned into "stop" if taken anyway: SMAX would clamp such an index
  onto its last enemy).
* World state: the per-unit blocks (``SmaxEnv.world_state``) are padded to
  ``P_a`` allies and ``P_e`` enemies with dead-unit blocks (all zero, team 1
  for enemies), then the episode progress.

Different maps are different JaxMARL environments, so one ``vmap`` cannot
step them all: ``SmaxMultiEnv`` is a ``BatchedMultiAgentEnv``. It splits its
``E`` environments into one equal group per map, in ``env.maps`` order
(``E`` must be a multiple of the number of maps; the config checks
``train.n_envs`` and ``train.eval_episodes``), vmaps each group with its own
``AutoReset(PaddedSmax(map))`` and concatenates the groups along ``E``.
Environment ``e`` gets the ``e``-th key of ``jax.random.split(key, E)``, as a
vmapped single-map environment would, so one unpadded map reproduces ``smax``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp

from jax_mat.envs.base import BatchedMultiAgentEnv, EnvSpec, Timestep
from jax_mat.envs.smax import SmaxEnv, check_smax_map, map_name_to_scenario, time_limit_steps
from jax_mat.envs.wrappers import AgentFeatures, AutoReset

STOP = 4  # SMAX's "stop": the one action every unit, dead or alive, can take
N_MOVE_ACTIONS = 5  # 4 moves and stop; attack j is action N_MOVE_ACTIONS + j


def map_sizes(map_name: str) -> tuple[int, int]:
    """``(n_allies, n_enemies)`` of a SMAX map (``ValueError`` for an unknown one)."""
    check_smax_map(map_name)
    scenario = map_name_to_scenario(map_name)
    return int(scenario.num_allies), int(scenario.num_enemies)


def check_maps(maps: Sequence[str]) -> None:
    """Raises ``ValueError`` unless ``maps`` is a non-empty list of distinct SMAX maps."""
    if not maps:
        raise ValueError("env.maps is empty; smax_multi needs at least one SMAX map, e.g. env.maps=[3m,8m]")
    for name in maps:
        try:
            check_smax_map(name)
        except ValueError as err:
            raise ValueError(f"env.maps: {err}") from None
    repeated = sorted({m for m in maps if list(maps).count(m) > 1})
    if repeated:
        raise ValueError(f"env.maps lists {', '.join(repeated)} more than once; each map gets one equal share")


def common_sizes(maps: Sequence[str], pad_allies: int = 0, pad_enemies: int = 0) -> tuple[int, int]:
    """``(P_a, P_e)``: the given sizes, or (where 0) the largest over ``maps``.

    Raises:
      ValueError: a bad map list, a negative size, or a map with more allies
        or enemies than the sizes given (naming the map).
    """
    check_maps(maps)
    for field, value in (("pad_allies", pad_allies), ("pad_enemies", pad_enemies)):
        if value < 0:
            raise ValueError(f"env.{field} must be >= 0 (0: the largest over env.maps), got {value}")
    sizes = {m: map_sizes(m) for m in maps}
    p_a = pad_allies or max(a for a, _ in sizes.values())
    p_e = pad_enemies or max(e for _, e in sizes.values())
    for name, (n_a, n_e) in sizes.items():
        if n_a > p_a:
            raise ValueError(f"map {name} has {n_a} allies, more than env.pad_allies={p_a}; raise it or drop the map")
        if n_e > p_e:
            raise ValueError(
                f"map {name} has {n_e} enemies, more than env.pad_enemies={p_e}; raise it or drop the map"
            )
    return p_a, p_e


def group_size(n_envs: int, n_maps: int, what: str = "the number of environments") -> int:
    """Environments per map when ``n_envs`` are split equally over ``n_maps``; ``ValueError`` unless they divide."""
    if n_envs % n_maps:
        lower = max(n_maps, n_envs - n_envs % n_maps)
        raise ValueError(
            f"{what} ({n_envs}) must be a multiple of the {n_maps} maps in env.maps, which share the "
            f"environments equally (e.g. {lower} or {lower + n_maps})"
        )
    return n_envs // n_maps


class PaddedSmax:
    """Raw (non auto-resetting) SMAX on one map, padded to ``P_a`` agents and ``P_e`` enemies.

    Shapes: ``obs [P_a, O]`` with ``O = U * (P_a - 1 + P_e) + F`` (``U`` features
    per observed unit, ``F`` own features: 13 and 10 in jaxmarl 0.2.0),
    ``avail [P_a, 5 + P_e]``, ``state [W * (P_a + P_e) + 1]`` (``W`` world-state
    features per unit), ``reward``/``active [P_a]``. The wrapped ``SmaxEnv``'s
    state is this environment's state, unchanged.
    """

    def __init__(self, map_name: str, pad_allies: int, pad_enemies: int, **smax_options: Any) -> None:
        if smax_options.get("observation_type", "unit_list") != "unit_list":
            raise ValueError("smax_multi pads JaxMARL's 'unit_list' observations only")
        self.map_name = map_name
        self.smax = SmaxEnv(map_name, **smax_options)
        n_a, n_e = self.smax.n_allies, self.smax.n_enemies
        if n_a > pad_allies or n_e > pad_enemies:
            raise ValueError(
                f"map {map_name} ({n_a} allies, {n_e} enemies) does not fit {pad_allies} allies and "
                f"{pad_enemies} enemies"
            )
        self.n_allies, self.n_enemies = n_a, n_e
        self.pad_allies, self.pad_enemies = pad_allies, pad_enemies
        jaxmarl = self.smax.jaxmarl_env
        self._unit_obs = len(jaxmarl.unit_features)
        self._own_obs = len(jaxmarl.own_features)
        self._unit_state = (self.smax.spec.state_dim - 1) // (n_a + n_e)
        self.spec = EnvSpec(
            n_agents=pad_allies,
            obs_dim=self._unit_obs * (pad_allies - 1 + pad_enemies) + self._own_obs,
            state_dim=self._unit_state * (pad_allies + pad_enemies) + 1,
            action_dim=N_MOVE_ACTIONS + pad_enemies,
            discrete=True,
            max_episode_steps=self.smax.spec.max_episode_steps,
        )

    def reset(self, key: chex.PRNGKey) -> tuple[Any, Timestep]:
        """``SmaxEnv.reset(key)``, padded."""
        state, timestep = self.smax.reset(key)
        return state, self.pad(timestep)

    def step(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        """Steps the real allies with ``actions[:n_a]`` (``[P_a]`` int); the padded agents' actions are ignored."""
        real = jnp.asarray(actions, jnp.int32)[: self.n_allies]
        real = jnp.where(real < N_MOVE_ACTIONS + self.n_enemies, real, STOP)
        state, timestep = self.smax.step(key, state, real)
        return state, self.pad(timestep)

    def pad(self, timestep: Timestep) -> Timestep:
        """A ``SmaxEnv`` timestep with its agents, unit slots, actions and world state padded."""
        return timestep.replace(
            obs=self.pad_obs(timestep.obs),
            world_state=self.pad_state(timestep.world_state),
            avail=self.pad_avail(timestep.avail),
            reward=self._pad_agents(timestep.reward, timestep.reward[0]),
            active=self._pad_agents(timestep.active, 0.0),
        )

    def pad_obs(self, obs: jax.Array) -> jax.Array:
        """``[n_a, O_map]`` -> ``[P_a, O]``: zero blocks after the real ally and enemy blocks, zero rows after the allies."""
        u, n_a, n_e = self._unit_obs, self.n_allies, self.n_enemies
        allies_end = u * (n_a - 1)
        enemies_end = allies_end + u * n_e
        rows = obs.shape[0]
        padded = jnp.concatenate([
            obs[:, :allies_end],
            jnp.zeros((rows, u * (self.pad_allies - n_a)), obs.dtype),
            obs[:, allies_end:enemies_end],
            jnp.zeros((rows, u * (self.pad_enemies - n_e)), obs.dtype),
            obs[:, enemies_end:],
        ], axis=1)
        return self._pad_agents(padded, 0.0)

    def pad_avail(self, avail: jax.Array) -> jax.Array:
        """``[n_a, 5 + n_e]`` -> ``[P_a, 5 + P_e]``: padded attacks unavailable, padded agents may only stop."""
        attacks = jnp.zeros((avail.shape[0], self.pad_enemies - self.n_enemies), avail.dtype)
        real = jnp.concatenate([avail, attacks], axis=1)
        stop_only = jax.nn.one_hot(STOP, self.spec.action_dim, dtype=avail.dtype)
        padded_agents = jnp.broadcast_to(stop_only, (self.pad_allies - self.n_allies, self.spec.action_dim))
        return jnp.concatenate([real, padded_agents], axis=0)

    def pad_state(self, state: jax.Array) -> jax.Array:
        """``[W * (n_a + n_e) + 1]`` -> ``[W * (P_a + P_e) + 1]`` with dead-unit blocks (team 0 allies, team 1 enemies)."""
        w, n_a, n_e = self._unit_state, self.n_allies, self.n_enemies
        dead_ally = jnp.zeros((w,), state.dtype)
        dead_enemy = dead_ally.at[-1].set(1.0)  # the block's last feature is the team
        return jnp.concatenate([
            state[: w * n_a],
            jnp.tile(dead_ally, self.pad_allies - n_a),
            state[w * n_a : w * (n_a + n_e)],
            jnp.tile(dead_enemy, self.pad_enemies - n_e),
            state[w * (n_a + n_e) :],
        ])

    def ally_visibility(self, state: Any) -> jax.Array:
        """``SmaxEnv.ally_visibility`` padded to ``[P_a, P_a]`` (a padded agent sees and is seen by nobody)."""
        extra = self.pad_allies - self.n_allies
        return jnp.pad(self.smax.ally_visibility(state), ((0, extra), (0, extra)))

    def _pad_agents(self, x: jax.Array, value: Any) -> jax.Array:
        """Appends ``P_a - n_a`` rows filled with ``value`` along axis 0."""
        fill = jnp.full((self.pad_allies - self.n_allies, *x.shape[1:]), value, x.dtype)
        return jnp.concatenate([x, fill], axis=0)


class SmaxMultiEnv(BatchedMultiAgentEnv):
    """Several SMAX maps, padded to common sizes and stepped as one batch (a ``BatchedMultiAgentEnv``).

    ``reset_batch(key, E)`` gives each map ``E / len(maps)`` environments, map
    ``k`` holding environments ``k * E / len(maps)`` onward; the state is a tuple
    of the maps' ``[E / len(maps)]``-leading ``AutoReset`` states.
    """

    def __init__(self, maps: Sequence[str], pad_allies: int = 0, pad_enemies: int = 0, time_limit: str = "smac",
                 obs_agent_id: bool = True, obs_last_action: bool = True, **smax_options: Any):
        """Raises ``ValueError`` for an unknown or repeated map, or one that does not fit the sizes given.

        ``time_limit`` gives each map its own episode limit (``smax.time_limit_steps``); ``obs_agent_id`` and
        ``obs_last_action`` append upstream MAT's agent features (``wrappers.AgentFeatures``) to the padded
        observations, so ids and actions have the padded sizes.
        """
        self.maps = tuple(maps)
        self.pad_allies, self.pad_enemies = common_sizes(self.maps, pad_allies, pad_enemies)
        self._options = dict(time_limit=time_limit, obs_agent_id=obs_agent_id, obs_last_action=obs_last_action,
                             **smax_options)
        self.map_envs = tuple(
            PaddedSmax(m, self.pad_allies, self.pad_enemies, max_steps=time_limit_steps(m, time_limit),
                       **smax_options)
            for m in self.maps
        )
        # The environments the policy acts in: padded, with the agent features appended.
        self.raw_envs = tuple(
            AgentFeatures(env, obs_agent_id, obs_last_action, visibility=env.ally_visibility)
            if obs_agent_id or obs_last_action else env
            for env in self.map_envs
        )
        self.envs = tuple(AutoReset(env) for env in self.raw_envs)
        longest = max(env.spec.max_episode_steps for env in self.raw_envs)
        self.spec = dataclasses.replace(self.raw_envs[0].spec, max_episode_steps=longest)

    def only(self, map_name: str) -> SmaxMultiEnv:
        """This environment restricted to one of its maps, padded to the same sizes (same spec)."""
        if map_name not in self.maps:
            raise ValueError(f"map {map_name!r} is not one of this run's env.maps: {', '.join(self.maps)}")
        return SmaxMultiEnv((map_name,), self.pad_allies, self.pad_enemies, **self._options)

    def group_size(self, n_envs: int) -> int:
        """Environments per map in a batch of ``n_envs`` (``ValueError`` unless the maps divide it)."""
        return group_size(n_envs, len(self.maps))

    def reset_batch(self, key: chex.PRNGKey, n_envs: int) -> tuple[tuple[Any, ...], Timestep]:
        """``n_envs`` fresh environments, ``n_envs / len(maps)`` per map; timesteps ``[E, ...]``."""
        size = self.group_size(n_envs)
        keys = _group_keys(key, n_envs, len(self.envs), size)
        states, timesteps = zip(*(jax.vmap(env.reset)(k) for env, k in zip(self.envs, keys)))
        return tuple(states), _concat(timesteps)

    def step_batch(
        self, key: chex.PRNGKey, state: tuple[Any, ...], actions: jax.Array
    ) -> tuple[tuple[Any, ...], Timestep]:
        """Steps (and auto-resets) every map's group; ``actions [E, P_a]`` int32."""
        n_envs = actions.shape[0]
        size = self.group_size(n_envs)
        keys = _group_keys(key, n_envs, len(self.envs), size)
        actions = actions.reshape(len(self.envs), size, *actions.shape[1:])
        outputs = [jax.vmap(env.step)(k, s, a) for env, k, s, a in zip(self.envs, keys, state, actions)]
        states, timesteps = zip(*outputs)
        return tuple(states), _concat(timesteps)


def _group_keys(key: chex.PRNGKey, n_envs: int, n_groups: int, size: int) -> jax.Array:
    """``jax.random.split(key, n_envs)`` as ``[n_groups, size, ...]``: environment ``e``'s key is the ``e``-th."""
    keys = jax.random.split(key, n_envs)
    return keys.reshape(n_groups, size, *keys.shape[1:])


def _concat(timesteps: Sequence[Timestep]) -> Timestep:
    """The groups' ``[E_k, ...]`` timesteps joined along the environment axis."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *timesteps)
