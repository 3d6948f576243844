"""SMAX adapter: JaxMARL's JAX re-implementation of StarCraft micromanagement.

``SmaxEnv`` wraps ``jaxmarl``'s ``HeuristicEnemySMAX`` (our agents are the
allied team, the enemy team follows JaxMARL's built-in heuristic) and exposes
it as a *raw* jax_mat environment: ``step`` never resets. Wrap it in
``envs.wrappers.AutoReset`` (``envs.registry.make_env`` does) to get the
auto-resetting ``MultiAgentEnv``; that wrapper is the only place where episodes
are reset and episode statistics are accumulated.

We deliberately call JaxMARL's ``step_env`` and not its ``step``: JaxMARL's
``step`` resets internally when the battle ends and hands back the *reset*
state, which throws away the terminal state we need to tell a win from a loss,
a draw or a time-out.

SMAX facts this adapter relies on (jaxmarl 0.2.0):

* Allied actions: 0-3 move (N, E, S, W), 4 stop, ``5 + j`` attack enemy ``j``
  (so ``A = 5 + n_enemies``). A dead unit can only take action 4 (stop); a live
  unit can always stop, so every row of ``avail`` has at least one 1.
* Shared team reward per step: the enemy team's health lost this step as a
  fraction of its total (so at most 1 over an episode), plus
  ``won_battle_bonus`` (1.0) on the step where the battle is won.
* An episode ends when one team is dead or after ``max_steps`` (100) steps.
  JaxMARL itself ends time-outs one step late (its ``is_terminal`` reads the
  step counter before incrementing it); this adapter ends them at exactly
  ``max_steps`` so that ``spec.max_episode_steps`` is a true bound.
"""

from __future__ import annotations

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp

from jax_mat.envs.base import EnvSpec, Timestep
from jax_mat.envs.quiet_import import quiet_import

# Importing jaxmarl takes several seconds (it imports every environment); this
# module is therefore only imported lazily by ``envs.registry``. It is the one
# module that imports jaxmarl (``smax_multi`` and ``render`` reach it through here).
with quiet_import():
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
    from jaxmarl.environments.smax import smax_env as _jaxmarl_smax

# Per-unit world-state features: health fraction, x, y, weapon cooldown
# fraction and the unit-type one-hot (all zero for a dead unit), then alive and
# team (0 ally, 1 enemy).
_N_GATED_UNIT_FEATURES = 4
_N_UNGATED_UNIT_FEATURES = 2

# SMAC maps with medivacs, which SMAX does not simulate.
_MEDIVAC_MAPS = ("MMM", "MMM2")

# SMAC's episode limits in SMAC steps (its map registry, ``smac_maps.py``, as upstream MAT ships it), for the
# SMAX maps that have a SMAC namesake.
SMAC_EPISODE_LIMITS = {
    "3m": 60, "8m": 120, "25m": 150, "5m_vs_6m": 70, "10m_vs_11m": 150, "27m_vs_30m": 180, "2s3z": 120,
    "3s5z": 150, "3s5z_vs_3s6z": 170, "3s_vs_5z": 250, "6h_vs_8z": 150,
}
# Game time per step. A SMAC step is 8 game loops (``step_mul=8``), and StarCraft II's "faster" speed runs
# 22.4 game loops per second. SMAX measures its unit speeds and weapon cooldowns in those seconds (a marine
# moves 3.15 and fires every 0.61 s, Liquipedia's "faster" figures) and one SMAX step is
# 8 world steps x 1/16 s = 0.5 s. So a SMAX step lasts 11.2 game loops, 1.4 SMAC steps.
SMAC_STEP_GAME_LOOPS = 8
SMAX_STEP_GAME_LOOPS = 0.5 * 22.4
JAXMARL_TIME_LIMIT = 100  # JaxMARL's SMAX default for every map (and the SMAX literature's, e.g. Sable)
TIME_LIMIT_PRESETS = ("smac", "jaxmarl")


def time_limit_steps(map_name: str, time_limit: str) -> int:
    """The episode limit, in SMAX steps, that ``env.time_limit`` gives ``map_name``.

    ``"smac"``: at least the game time SMAC gives the map, ``ceil(limit * 8 / 11.2)`` SMAX steps (3s5z: 150
    SMAC steps -> 108); maps without a SMAC namesake (``smacv2_*``) keep JaxMARL's 100. ``"jaxmarl"``: 100 on
    every map. A positive integer: that many steps. ``ValueError`` for anything else.
    """
    if time_limit == "smac":
        limit = SMAC_EPISODE_LIMITS.get(map_name)
        return JAXMARL_TIME_LIMIT if limit is None else math.ceil(limit * SMAC_STEP_GAME_LOOPS / SMAX_STEP_GAME_LOOPS
                                                                  - 1e-9)
    if time_limit == "jaxmarl":
        return JAXMARL_TIME_LIMIT
    if str(time_limit).isdigit() and int(time_limit) >= 1:
        return int(time_limit)
    raise ValueError(
        f"env.time_limit must be a preset ({', '.join(TIME_LIMIT_PRESETS)}) or a number of steps >= 1, "
        f"got {time_limit!r}"
    )


def known_smax_maps() -> tuple[str, ...]:
    """Map names JaxMARL's SMAX registry knows, in registration order."""
    return tuple(_jaxmarl_smax.MAP_NAME_TO_SCENARIO)


def map_summary(map_name: str) -> str:
    """``"3 allies vs 3 enemies"``, with how SMACv2 maps draw their units (``python -m jax_mat.train --list``)."""
    scenario = map_name_to_scenario(map_name)
    drawn = [what for what, flag in (("unit types", scenario.smacv2_unit_type_generation),
                                     ("positions", scenario.smacv2_position_generation)) if flag]
    summary = f"{scenario.num_allies} allies vs {scenario.num_enemies} enemies"
    return summary + (f", random {' and '.join(drawn)} each episode (SMACv2)" if drawn else "")


def check_smax_map(map_name: str) -> None:
    """Raises ``ValueError`` (listing the known maps) unless SMAX has ``map_name``."""
    known = known_smax_maps()
    if map_name in known:
        return
    listing = ", ".join(known)
    if str(map_name).upper() in _MEDIVAC_MAPS:
        raise ValueError(
            f"SMAX cannot simulate map {map_name!r}: SMAX has no medivac unit. "
            f"Use env=smac (the real StarCraft II bridge) for {map_name}; SMAX maps: {listing}"
        )
    raise ValueError(f"unknown SMAX map {map_name!r}; known: {listing}")


class SmaxEnv:
    """Raw (non auto-resetting) SMAX environment for one map.

    Shapes (per environment; vmap for a batch): ``N`` allied agents, ``O``
    per-agent observation size, ``A = 5 + n_enemies`` actions and
    ``S = 12 * (n_allies + n_enemies) + 1`` world-state size.

    Timestep fields returned by ``reset``/``step``:

    * ``obs`` ``[N, O]`` float32: JaxMARL's per-ally "unit_list" observation
      (other allies, then enemies, then own features; all zero for a dead agent).
    * ``state`` ``[S]`` float32: see ``world_state``.
    * ``avail`` ``[N, A]`` float32 0/1 (JaxMARL returns uint8).
    * ``reward`` ``[N]`` float32: the shared team reward, repeated per agent.
    * ``done`` ``[]`` bool: the battle ended (a team died) or time ran out.
    * ``truncated`` ``[]`` bool: ended by the time limit with both teams alive.
    * ``active`` ``[N]`` float32: 1 where the ally is alive in this ``obs``.
    * ``won`` ``[]`` bool: this step ended the episode in a win (see ``step``).
    * ``episode_return``/``episode_length``: zeros; ``AutoReset`` fills them.
    """

    def __init__(self, map_name: str, **jaxmarl_kwargs: Any) -> None:
        """Builds the JaxMARL environment; raises ``ValueError`` for an unknown map.

        Args:
          map_name: a name from ``known_smax_maps()``.
          **jaxmarl_kwargs: forwarded to ``HeuristicEnemySMAX`` (for example
            ``attack_mode="random"``, ``enemy_shoots=False``, ``max_steps``,
            ``observation_type="conic"``). Only discrete actions are supported.
        """
        check_smax_map(map_name)
        if jaxmarl_kwargs.get("action_type", "discrete") != "discrete":
            raise ValueError("SmaxEnv supports only action_type='discrete'")
        self.map_name = map_name
        self._env = HeuristicEnemySMAX(scenario=map_name_to_scenario(map_name), **jaxmarl_kwargs)
        self.n_allies = self._env.num_allies
        self.n_enemies = self._env.num_enemies
        n_units = self.n_allies + self.n_enemies
        self._n_unit_types = self._env.unit_type_bits
        self._unit_feature_dim = _N_GATED_UNIT_FEATURES + self._n_unit_types + _N_UNGATED_UNIT_FEATURES
        self.spec = EnvSpec(
            n_agents=self.n_allies,
            obs_dim=self._env.obs_size,
            state_dim=self._unit_feature_dim * n_units + 1,
            action_dim=self._env.num_ally_actions,
            discrete=True,
            max_episode_steps=self._env.max_steps,
        )

    @property
    def jaxmarl_env(self) -> HeuristicEnemySMAX:
        """The wrapped JaxMARL environment (for rendering or inspection)."""
        return self._env

    def reset(self, key: chex.PRNGKey) -> tuple[Any, Timestep]:
        """Starts an episode. Returns JaxMARL's ``EnemySMAX`` state and the first timestep."""
        obs, state = self._env.reset(key)
        zero = jnp.zeros((), jnp.bool_)
        reward = jnp.zeros((self.n_allies,), jnp.float32)
        return state, self._timestep(obs, state, reward, zero, zero, zero)

    def step(self, key: chex.PRNGKey, state: Any, actions: jax.Array) -> tuple[Any, Timestep]:
        """Advances one step without resetting.

        Args:
          key: PRNG key (the enemy heuristic and weapon cooldowns are random).
          state: the state from ``reset`` or a previous ``step``.
          actions: ``[N]`` integer allied actions; unavailable actions are
            no-ops in SMAX (an out-of-range attack does nothing).

        Returns:
          The next state and its timestep. ``won`` is true when the episode
          ended with every enemy dead and at least one ally alive: exactly the
          condition under which SMAX pays ``won_battle_bonus``. We read it from
          the terminal state instead of JaxMARL's ``SMAXLogWrapper`` test
          "step reward >= 1", which would also count a draw (both teams wiped
          out on the same step) whose damage reward happens to reach 1.
        """
        actions = jnp.asarray(actions, jnp.int32)
        action_dict = {agent: actions[i] for i, agent in enumerate(self._env.agents)}
        obs, state, rewards, _, _ = self._env.step_env(key, state, action_dict)
        reward = jnp.full((self.n_allies,), rewards[self._env.agents[0]], jnp.float32)
        done, truncated, won = self._outcome(state)
        return state, self._timestep(obs, state, reward, done, truncated, won)

    def world_state(self, state: Any) -> jax.Array:
        """Global state ``[S]`` float32 of a JaxMARL ``EnemySMAX`` state.

        JaxMARL's own ``get_world_state`` (used as-is by its MAPPO baseline)
        has raw map coordinates (0-32) and a weapon cooldown that keeps falling
        below zero while a unit does not shoot (about -50 after 100 steps). We
        keep its per-unit layout but normalise like the agent observations:
        for every unit (allies first, then enemies) ``[health / max_health,
        x / map_width, y / map_height, clip(cooldown / unit_cooldown, 0, 1),
        unit_type one-hot]`` (zeroed when the unit is dead), then ``alive`` and
        ``team``; finally the episode progress ``t / max_steps``.
        """
        env, inner = self._env, state.state
        types = inner.unit_types.astype(jnp.int32)
        health = inner.unit_health / env.unit_type_health[types]
        position = inner.unit_positions / jnp.array([env.map_width, env.map_height], jnp.float32)
        cooldown = jnp.clip(inner.unit_weapon_cooldowns / env.unit_type_weapon_cooldowns[types], 0.0, 1.0)
        one_hot = jax.nn.one_hot(types, self._n_unit_types, dtype=jnp.float32)
        alive = inner.unit_alive.astype(jnp.float32)
        gated = jnp.concatenate([health[:, None], position, cooldown[:, None], one_hot], axis=-1)
        units = jnp.concatenate([gated * alive[:, None], alive[:, None], inner.unit_teams[:, None]], axis=-1)
        progress = inner.step.astype(jnp.float32)[None] / env.max_steps
        return jnp.concatenate([units.reshape(-1), progress]).astype(jnp.float32)

    def ally_visibility(self, state: Any) -> jax.Array:
        """``[N, N]`` float32: 1 where ally ``i`` sees ally ``j`` (both alive, ``j`` within ``i``'s sight range).

        JaxMARL's own test for which units an observation shows (``get_obs_unit_list``); the diagonal is 1
        for a live ally.
        """
        env, inner = self._env, state.state
        n = self.n_allies
        positions = inner.unit_positions[:n]
        alive = inner.unit_alive[:n]
        sight = env.unit_type_sight_ranges[inner.unit_types[:n].astype(jnp.int32)]
        distance = jnp.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
        visible = (distance < sight[:, None]) & alive[:, None] & alive[None, :]
        return visible.astype(jnp.float32)

    def avail_actions(self, state: Any) -> jax.Array:
        """``[N, A]`` float32 0/1 available actions of the allies."""
        avail = self._env.get_avail_actions(state)
        return jnp.stack([avail[agent] for agent in self._env.agents]).astype(jnp.float32)

    def _outcome(self, state: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``done``, ``truncated`` and ``won`` (``[]`` bool each) after a step."""
        inner = state.state
        allies_dead = ~jnp.any(inner.unit_alive[: self.n_allies])
        enemies_dead = ~jnp.any(inner.unit_alive[self.n_allies :])
        # JaxMARL tests its time limit on the step counter *before* incrementing
        # it, so its own episodes last max_steps + 1 steps; we stop at max_steps.
        done = inner.done | (inner.step >= self._env.max_steps)
        truncated = done & ~allies_dead & ~enemies_dead
        won = done & enemies_dead & ~allies_dead
        return done, truncated, won

    def _timestep(
        self,
        obs: dict[str, jax.Array],
        state: Any,
        reward: jax.Array,
        done: jax.Array,
        truncated: jax.Array,
        won: jax.Array,
    ) -> Timestep:
        """Assembles a timestep from JaxMARL's obs dict and state (zero episode statistics)."""
        return Timestep(
            obs=jnp.stack([obs[agent] for agent in self._env.agents]).astype(jnp.float32),
            world_state=self.world_state(state),
            avail=self.avail_actions(state),
            reward=reward,
            done=done,
            truncated=truncated,
            active=state.state.unit_alive[: self.n_allies].astype(jnp.float32),
            episode_return=jnp.zeros((), jnp.float32),
            episode_length=jnp.zeros((), jnp.int32),
            won=won,
        )
