"""Multi-agent MuJoCo task tables: robots, agent partitions, joint graphs, rewards.

Plain Python, no MuJoCo or JAX: ``envs.registry`` checks task and joint names
with it before anything is built, and ``envs.mujoco`` builds the MJX
environment from it.

What each task reproduces (MaMuJoCo as upstream MAT ships it, on gym's ``-v2``
environments):

* Partitions and joint graphs are MaMuJoCo's (``obsk.get_parts_and_edges``):
  HalfCheetah ``6x1`` (one agent per joint), Ant ``2x4`` (neighbouring legs
  together), Walker2d ``2x3`` (one leg each). A joint is named by its MaMuJoCo
  label (``bthigh``, ``hip1``, ``thigh_left_joint``).
* The per-agent observation at graph distance ``k`` (``agent_obsk``):
  ``observation_layout`` below, as ``obsk.build_obs`` assembles it.
* Rewards, termination, frame skip and reset noise are gym's ``HalfCheetah-v2``,
  ``Ant-v2`` and ``Walker2d-v2`` (``reward`` in ``envs.mujoco``).

Where we differ on purpose (also listed in ``docs/results.md``, issue 5):

* HalfCheetah's agents are ordered as its actuators (bthigh, bshin, bfoot,
  fthigh, fshin, ffoot), and every agent observes and drives its own joints.
  MaMuJoCo lists the ``6x1`` agents as bfoot, bshin, bthigh, ffoot, fshin,
  fthigh but concatenates their actions in actuator order, so its agent 0
  observes the back foot and drives the back thigh (likewise Ant's agent 0
  drives hip4, ankle4, hip1, ankle1 while observing legs 1 and 2). Here each
  action dimension goes to the actuator of the joint it names.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

# gym's MuJoCo environments end episodes after 1000 steps (TimeLimit), as does MaMuJoCo's episode_limit.
EPISODE_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class MujocoTask:
    """One multi-agent MuJoCo task.

    Attributes:
      name: the ``env.task`` name, ``<robot>_<partition>``.
      model_file: the MJCF file in brax's ``envs/assets`` (brax's MJX-ready models).
      agents: each agent's joints (MaMuJoCo labels), in the order of its action dimensions.
      edges: MaMuJoCo's joint graph as hyperedges (joints that are one step apart).
      mjcf_joints: MaMuJoCo label -> the model's joint name, where they differ.
      global_qpos: ``qpos`` entries every agent observes (MaMuJoCo's global joints), in its order.
      global_qvel: likewise for ``qvel``.
      frame_skip: physics steps per environment step.
      ctrl_cost_weight: the control cost is ``ctrl_cost_weight * sum(action ** 2)``.
      healthy_reward: paid every step (gym's alive bonus / survive reward).
      healthy_height: the torso height range outside which the episode terminates (None: never).
      healthy_angle: likewise for the torso pitch ``qpos[2]`` (None: not checked).
      height_offset: torso height minus ``qpos[height_qpos]`` (brax's Walker2d measures rootz from the
        torso's rest height, gym's from the floor).
      height_qpos: the ``qpos`` entry of the torso height.
      reset_noise: initial ``qpos`` gets uniform noise in ``[-reset_noise, reset_noise]``.
      qvel_noise_normal: initial ``qvel`` noise is ``reset_noise * N(0, 1)`` (else uniform like ``qpos``).
      state_qpos_from: the world state (gym's single-agent observation) drops ``qpos[:state_qpos_from]``.
      state_qvel_clip: gym clips ``qvel`` to this range in that observation (None: not clipped).
      all_geoms_collide: make every body geom collide with the floor, as gym's model does
        (brax's model lets only some of them).
      aliases: other accepted joint names -> MaMuJoCo label.
    """

    name: str
    model_file: str
    agents: tuple[tuple[str, ...], ...]
    edges: tuple[tuple[str, ...], ...]
    global_qpos: tuple[int, ...]
    global_qvel: tuple[int, ...]
    frame_skip: int
    ctrl_cost_weight: float
    healthy_reward: float = 0.0
    healthy_height: tuple[float, float] | None = None
    healthy_angle: tuple[float, float] | None = None
    height_offset: float = 0.0
    height_qpos: int = 1
    reset_noise: float = 0.1
    qvel_noise_normal: bool = True
    state_qpos_from: int = 1
    state_qvel_clip: float | None = None
    all_geoms_collide: bool = False
    mjcf_joints: Mapping[str, str] = dataclasses.field(default_factory=dict)
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def joints(self) -> tuple[str, ...]:
        """Every agent's joints, agent by agent."""
        return tuple(j for agent in self.agents for j in agent)

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def action_dim(self) -> int:
        """The largest agent's joint count (smaller agents' extra action dimensions are ignored)."""
        return max(len(agent) for agent in self.agents)

    def mjcf_joint(self, label: str) -> str:
        return self.mjcf_joints.get(label, label)


_HALFCHEETAH = MujocoTask(
    name="halfcheetah_6x1",
    model_file="half_cheetah.xml",
    agents=(("bthigh",), ("bshin",), ("bfoot",), ("fthigh",), ("fshin",), ("ffoot",)),
    edges=(("bfoot", "bshin"), ("bshin", "bthigh"), ("bthigh", "fthigh"), ("fthigh", "fshin"), ("fshin", "ffoot")),
    # MaMuJoCo's globals root_x, root_y, root_z without root_x's position: qpos of rooty, rootz; qvel of all three.
    global_qpos=(2, 1),
    global_qvel=(0, 2, 1),
    frame_skip=5,
    ctrl_cost_weight=0.1,
    all_geoms_collide=True,
    aliases={"back_thigh": "bthigh", "back_shin": "bshin", "back_foot": "bfoot",
             "fore_thigh": "fthigh", "fore_shin": "fshin", "fore_foot": "ffoot"},
)

_ANT = MujocoTask(
    name="ant_2x4",
    model_file="ant.xml",
    agents=(("hip1", "ankle1", "hip2", "ankle2"), ("hip3", "ankle3", "hip4", "ankle4")),
    edges=(("ankle4", "hip4"), ("ankle1", "hip1"), ("ankle2", "hip2"), ("ankle3", "hip3"),
           ("hip4", "hip1", "hip2", "hip3")),
    # MaMuJoCo's global free joint: qpos[:7] (position and orientation quaternion), qvel[:6].
    global_qpos=tuple(range(7)),
    global_qvel=tuple(range(6)),
    frame_skip=5,
    ctrl_cost_weight=0.5,
    healthy_reward=1.0,
    healthy_height=(0.2, 1.0),
    height_qpos=2,
    state_qpos_from=2,
    mjcf_joints={f"{part}{i}": f"{part}_{i}" for part in ("hip", "ankle") for i in range(1, 5)},
)

_WALKER = MujocoTask(
    name="walker2d_2x3",
    model_file="walker2d.xml",
    agents=(("foot_joint", "leg_joint", "thigh_joint"), ("foot_left_joint", "leg_left_joint", "thigh_left_joint")),
    edges=(("foot_joint", "leg_joint"), ("leg_joint", "thigh_joint"), ("foot_left_joint", "leg_left_joint"),
           ("leg_left_joint", "thigh_left_joint"), ("thigh_joint", "thigh_left_joint")),
    # MaMuJoCo gives Walker2d no global joints: an agent sees only its leg.
    global_qpos=(),
    global_qvel=(),
    frame_skip=4,
    ctrl_cost_weight=1e-3,
    healthy_reward=1.0,
    healthy_height=(0.8, 2.0),
    healthy_angle=(-1.0, 1.0),
    height_offset=1.25,
    reset_noise=5e-3,
    qvel_noise_normal=False,
    state_qvel_clip=10.0,
)

TASKS: dict[str, MujocoTask] = {t.name: t for t in (_HALFCHEETAH, _ANT, _WALKER)}

# MaMuJoCo's observation categories per graph distance ("qpos,qvel|qpos"): own joints'
# positions and velocities, farther joints' positions only. Ant's list adds cfrc_ext, which
# build_obs never appends for joints (and drops for the free joint), so it is left out here.
_LOCAL_CATEGORIES = (("qpos", "qvel"), ("qpos",))


def known_tasks() -> tuple[str, ...]:
    return tuple(TASKS)


def _task(name: str) -> MujocoTask:
    known = ", ".join(known_tasks())
    if not name:
        raise ValueError(f"env.name=mujoco needs env.task; known: {known}")
    if name not in TASKS:
        raise ValueError(f"unknown MuJoCo task {name!r} (env.task); known: {known}")
    return TASKS[name]


def resolve_joints(task: MujocoTask, names: tuple[str, ...]) -> tuple[str, ...]:
    """The MaMuJoCo labels of ``names`` (labels or aliases); ``ValueError`` listing the valid ones otherwise."""
    labels = []
    for name in names:
        label = task.aliases.get(name, name)
        if label not in task.joints:
            aliases = f" (or {', '.join(task.aliases)})" if task.aliases else ""
            raise ValueError(
                f"unknown joint {name!r} for MuJoCo task {task.name} (env.disabled_joints); "
                f"known: {', '.join(task.joints)}{aliases}"
            )
        labels.append(label)
    return tuple(labels)


def check_options(task: str, disabled_joints: tuple[str, ...] = (), agent_obsk: int = 0) -> MujocoTask:
    """Raises ``ValueError`` for an unknown task or joint name or a negative ``agent_obsk``; returns the task."""
    spec = _task(task)
    resolve_joints(spec, tuple(disabled_joints))
    if isinstance(agent_obsk, bool) or not isinstance(agent_obsk, int) or agent_obsk < 0:
        raise ValueError(f"env.agent_obsk must be an integer >= 0 (the graph distance each agent observes), "
                         f"got {agent_obsk!r}")
    return spec


def joints_by_distance(task: MujocoTask, agent: int, k: int) -> tuple[tuple[str, ...], ...]:
    """The joints at graph distance ``0..k`` from ``agent``'s joints, each distance sorted by label
    (MaMuJoCo's ``get_joints_at_kdist``)."""
    seen = set(task.agents[agent])
    frontier = set(seen)
    layers = [tuple(sorted(frontier))]
    for _ in range(k):
        reached = {j for edge in task.edges for j in edge if frontier & set(edge)}
        frontier = reached - seen
        seen |= frontier
        layers.append(tuple(sorted(frontier)))
    return tuple(layers)


def observation_layout(task: MujocoTask, agent: int, k: int) -> tuple[tuple[str, str | int], ...]:
    """What ``agent`` observes at graph distance ``k``, in order, before zero padding and its one-hot id.

    Each entry is ``(field, where)``: ``field`` is ``"qpos"`` or ``"qvel"`` and
    ``where`` a joint label (that joint's coordinate) or an int (that entry of
    the field, for the task's global joints). First the joints at distance 0
    (position and velocity of each), then those farther away (position only),
    then the global positions and velocities, as MaMuJoCo's ``build_obs``.
    """
    layout: list[tuple[str, str | int]] = []
    for distance, joints in enumerate(joints_by_distance(task, agent, k)):
        categories = _LOCAL_CATEGORIES[min(distance, len(_LOCAL_CATEGORIES) - 1)]
        layout.extend((category, joint) for joint in joints for category in categories)
    layout.extend(("qpos", i) for i in task.global_qpos)
    layout.extend(("qvel", i) for i in task.global_qvel)
    return tuple(layout)
