"""The run configuration's schema: frozen dataclasses, their defaults and the checks each makes on its own.

A run is one ``Config`` (``env``, ``algo``, ``train``, ``seed``, ``name``). Each field's default lives here
and only here; ``jax_mat/configs/default.yaml`` holds only what the default run changes. A section checks
its own fields when it is built (types are coerced by the loader, ``config.loading``), and ``Config``
checks the arithmetic between sections; nothing here imports an environment, a network or JAX. What needs
the registries or the devices (unknown maps, an algorithm's network, ``train.devices``) is
``config.validation.validate``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DISTRIBUTED_MODES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which environment to train on; each environment reads the fields it names below.

    ``jax_mat.envs.registry`` checks the fields against the environment ``name`` (unknown maps, tasks or
    joints, another environment's options) when the config is validated.
    """

    name: str = "smax"  # known: see jax_mat.envs.registry.known_envs()
    map: str = "3m"  # smax, smac: the map
    task: str = ""  # mujoco: halfcheetah_6x1, ant_2x4, ...; isaac: a Bi-DexHands task
    maps: tuple[str, ...] = ()  # smax_multi: the SMAX maps trained together
    disabled_joints: tuple[str, ...] = ()  # mujoco: joints whose agents' actions are ignored (zero torque)
    agent_obsk: int = 0  # mujoco: graph distance of the joints each agent observes (MaMuJoCo's k)
    pad_allies: int = 0  # smax_multi: agents every map is padded to (0: the most allies over env.maps)
    pad_enemies: int = 0  # smax_multi: enemy slots every map is padded to (0: the most enemies over env.maps)
    # smax, smax_multi: episode limit: "smac" (the game time SMAC gives the map), "jaxmarl" (100) or a step count
    time_limit: str = "smac"
    # smax, smax_multi, smac: what upstream MAT's StarCraft environment appends to each observation
    obs_agent_id: bool = True  # the agent's one-hot id
    obs_last_action: bool = True  # the last actions of the agent and of the allies it sees (one-hot)
    # smac, isaac (host bridges, jax_mat/envs/host_options.py):
    host_env: str = ""  # the simulator's constructor "module:attribute"; "" = the real SMAC / Bi-DexHands
    host_workers: int = 0  # worker processes per pool; 0 = one per environment (smac), one in all (isaac)
    host_timeout_s: float = 60.0  # a worker silent this long on a step is restarted (its episodes truncated)
    host_python: str = ""  # the workers' interpreter ("" = this one; Isaac Gym Preview 4 needs Python <= 3.8)

    @property
    def variant(self) -> str:
        """What names the run's task: the map (smax, smac), the task (mujoco, isaac) or the map list."""
        from jax_mat.envs import registry

        return registry.env_variant(self)


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """Algorithm, PPO and network settings: upstream MAT on SMAC (report Tables 1-3).

    The PPO objective's fields become ``algos.ppo.LossConfig`` (``loss_config``). The two masks differ
    from ``LossConfig``'s defaults on purpose: these are what upstream's SMAC, MuJoCo and hands scripts
    run (they pass the ``store_false`` flag ``--use_value_active_masks``), ``LossConfig``'s are upstream
    ``config.py``'s argparse defaults (both masks on), which the parity fixtures were made with.
    """

    name: str = "mat"  # one of jax_mat.algos.registry.known_algos()
    lr: float = 5e-4  # Table 2
    opti_eps: float = 1e-5  # Table 1
    ppo_epochs: int = 10
    num_mini_batch: int = 1  # Table 1
    clip: float = 0.05  # Table 3
    entropy_coef: float = 0.01  # Table 1
    value_loss_coef: float = 1.0
    max_grad_norm: float = 10.0  # Table 1
    gamma: float = 0.99  # Table 3
    gae_lambda: float = 0.95
    huber_delta: float = 10.0
    use_huber_loss: bool = True  # Table 1
    use_valuenorm: bool = True
    use_clipped_value_loss: bool = True
    use_value_active_masks: bool = False  # train_smac.sh passes the store_false flag: dead agents' values train
    use_policy_active_masks: bool = True  # (train_smac.sh does not pass it: on)
    use_proper_time_limits: bool = False  # bootstrap through time limits (MuJoCo); SMAC/SMAX: they are terminal
    n_block: int = 1  # Table 1
    n_embd: int = 64  # Table 1: the hidden width (MAPPO/HAPPO: of each MLP layer)
    n_head: int = 1  # Table 1
    dec_actor: bool = False  # True for mat_dec (and only for it)
    share_actor: bool = False  # mat_dec: one actor MLP for all agents (upstream forces it on for mat_dec)
    rwkv_version: int = 4  # marwkv, mat_rwkv: RWKV-4, -5 or -6 blocks
    wkv_impl: str = "auto"  # marwkv, mat_rwkv: the WKV operator (jax_mat.ops.wkv.IMPLS; auto: Pallas on a GPU)
    mlp_layers: int = 2  # mappo, happo: hidden layers of the actor and critic MLPs
    zero_std: bool = False  # mat, mat_dec, marwkv, mat_rwkv, continuous actions: log_std starts at 0 (upstream's
    #                         zero_std(), which its Bi-DexHands runner calls), not 1

    def __post_init__(self):
        _require_positive("algo", self, "lr", "opti_eps", "clip", "max_grad_norm", "huber_delta")
        _require_non_negative("algo", self, "entropy_coef", "value_loss_coef")
        _require_unit_interval("algo", self, "gamma", "gae_lambda")
        _require_at_least_one("algo", self, "ppo_epochs", "num_mini_batch", "n_block", "n_embd", "n_head", "mlp_layers")
        if self.n_embd % self.n_head:
            raise ValueError(f"algo.n_embd ({self.n_embd}) must be divisible by algo.n_head ({self.n_head})")
        if self.rwkv_version not in (4, 5, 6):
            raise ValueError(f"algo.rwkv_version must be 4, 5 or 6, got {self.rwkv_version!r}")

    def loss_config(self):
        """The PPO objective's settings as ``jax_mat.algos.ppo.LossConfig``."""
        from jax_mat.algos.ppo import LossConfig

        return LossConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LossConfig)})

    def network_config(self):
        """The network's config (``MATConfig``, ``MARWKVConfig`` or ``MLPConfig``), as the algorithm table
        (``jax_mat.algos.registry``) projects it."""
        from jax_mat.algos import registry

        return registry.network_config(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Rollout size, budget and bookkeeping."""

    n_envs: int = 32  # rollout threads
    episode_length: int = 100  # rollout steps per update
    total_steps: int = 1_000_000  # env steps (one step = all agents of one env)
    log_every: int = 1  # updates between logged points
    checkpoint_every: int = 10  # updates between checkpoints (and one at the end)
    eval_episodes: int = 32  # per evaluation: periodic, final (eval.json); the absolute metric plays 10x
    eval_every: int = 10  # updates between periodic evaluations (0: none; jax_mat.training.evaluation)
    eval_greedy: bool = True  # periodic and absolute evaluations: greedy actions (MAT's); false: sampled (Mava's)
    seeds: int = 1  # independent runs with seeds seed, seed + 1, ... trained as one vmapped program
    # Scale-out (jax_mat.training.distributed, docs/distributed.md): the environments are sharded over
    # ``devices`` ("all" or a count; every process's devices in a multi-process run), parameters replicated.
    devices: str = "1"
    # Seed sweeps over devices: the seeds split over this many equal groups of the devices, each group
    # splitting its seeds' environments over its devices (1: every seed on every device, vmapped).
    seed_shards: int = 1
    distributed: str = "auto"  # jax.distributed: auto (when an address or process count is given), on, off
    coordinator_address: str = ""  # "host:port" of process 0; "" -> $JAX_COORDINATOR_ADDRESS or auto-detected
    num_processes: int = 0  # 0 -> $JAX_NUM_PROCESSES or auto-detected
    process_id: int = -1  # this process's own (never saved with the run); -1 -> $JAX_PROCESS_ID or auto-detected
    init_from: str = ""  # --init-from: the checkpoint (RUN_DIR/checkpoints/<update>) the parameters start from
    init_seed: int = -1  # --init-seed: the source sweep's seed every seed starts from (-1: see training.finetune)
    reset_optimizer: bool = False  # --reset-optimizer: a fresh optimiser state instead of the checkpoint's

    def __post_init__(self):
        _require_at_least_one(
            "train", self, "n_envs", "episode_length", "total_steps", "log_every", "checkpoint_every",
            "eval_episodes", "seeds", "seed_shards",
        )  # fmt: skip
        if self.eval_every < 0:
            raise ValueError(f"train.eval_every must be >= 0 (0: no periodic evaluation), got {self.eval_every}")
        if self.devices != "all" and not (self.devices.isdigit() and int(self.devices) >= 1):
            raise ValueError(f"train.devices must be 'all' or a device count >= 1, got {self.devices!r}")
        if self.seeds % self.seed_shards:
            raise ValueError(
                f"train.seeds ({self.seeds}) must be divisible by train.seed_shards ({self.seed_shards}): "
                f"the seeds are split evenly over that many groups of devices"
            )
        if self.device_count is not None and self.device_count % self.seed_shards:
            raise ValueError(
                f"train.devices ({self.device_count}) must be divisible by train.seed_shards ({self.seed_shards}): "
                f"the seeds are spread over that many equal groups of devices"
            )
        env_shards = self.device_count // self.seed_shards if self.device_count is not None else 1
        if self.n_envs % env_shards:
            over = f"train.devices ({self.device_count})" if self.seed_shards == 1 else (
                f"the {env_shards} devices of each of train.seed_shards ({self.seed_shards}) groups")
            raise ValueError(
                f"train.n_envs ({self.n_envs}) must be divisible by {over}: the environments are split evenly "
                f"over the devices"
            )
        if self.distributed not in DISTRIBUTED_MODES:
            raise ValueError(
                f"train.distributed must be one of {', '.join(DISTRIBUTED_MODES)}, got {self.distributed!r}"
            )
        if self.coordinator_address:
            host, _, port = self.coordinator_address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"train.coordinator_address must be host:port (e.g. 10.0.0.1:1234), "
                    f"got {self.coordinator_address!r}"
                )
        if self.num_processes < 0:
            raise ValueError(f"train.num_processes must be >= 1 (or 0: from the environment), got {self.num_processes}")
        if self.process_id < -1:
            raise ValueError(f"train.process_id must be >= 0 (or -1: from the environment), got {self.process_id}")
        if self.num_processes and self.process_id >= self.num_processes:
            raise ValueError(
                f"train.process_id ({self.process_id}) must be below train.num_processes ({self.num_processes}): "
                f"process ids are 0..{self.num_processes - 1}"
            )
        launch = [f"train.{n}" for n, unset in (("coordinator_address", ""), ("num_processes", 0), ("process_id", -1))
                  if getattr(self, n) != unset]
        if self.distributed == "off" and launch:
            raise ValueError(
                f"train.distributed=off contradicts {', '.join(launch)}; drop them or use train.distributed=auto"
            )

        if self.init_seed < -1:
            raise ValueError(f"train.init_seed must be >= 0 (or -1: unset), got {self.init_seed}")
        if not self.init_from and (self.init_seed != -1 or self.reset_optimizer):
            option = ("train.init_seed (--init-seed)" if self.init_seed != -1
                      else "train.reset_optimizer (--reset-optimizer)")
            raise ValueError(f"{option} applies only with train.init_from (--init-from RUN_DIR)")

    @property
    def device_count(self) -> int | None:
        """The devices asked for, or None for ``devices=all``."""
        return None if self.devices == "all" else int(self.devices)


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    algo: AlgoConfig = dataclasses.field(default_factory=AlgoConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    seed: int = 0
    name: str = ""  # run name; "" -> f"{algo.name}-{env.name}-{env.variant}"

    def __post_init__(self):
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        t = self.train
        if self.batch_size % self.algo.num_mini_batch:
            raise ValueError(
                f"train.n_envs * train.episode_length = {t.n_envs} * {t.episode_length} = {self.batch_size} "
                f"is not divisible by algo.num_mini_batch = {self.algo.num_mini_batch}"
            )
        if t.total_steps < self.batch_size:
            raise ValueError(
                f"train.total_steps ({t.total_steps}) is less than one update, train.n_envs * train.episode_length "
                f"= {t.n_envs} * {t.episode_length} = {self.batch_size}"
            )

    @property
    def run_algo_name(self) -> str:
        """The algorithm as runs and tables name it: ``algo.name``, with ``_v5``/``_v6`` for RWKV versions other than 4."""
        from jax_mat.algos import registry

        return registry.run_algo_name(self.algo)

    @property
    def run_name(self) -> str:
        """``name``, or ``"<algo>-<env>-<map or task>"`` when ``name`` is empty (``marwkv_v6``: RWKV versions other than 4)."""
        return self.name or f"{self.run_algo_name}-{self.env.name}-{self.env.variant}"

    @property
    def batch_size(self) -> int:
        """Environment steps collected per update: ``n_envs * episode_length``."""
        return self.train.n_envs * self.train.episode_length

    @property
    def num_updates(self) -> int:
        """PPO updates in the run: ``total_steps // batch_size`` (at least 1)."""
        return max(1, self.train.total_steps // self.batch_size)

    @property
    def minibatch_size(self) -> int:
        """Environment steps per minibatch: ``batch_size // num_mini_batch``."""
        return self.batch_size // self.algo.num_mini_batch


def _require_positive(section: str, obj: Any, *names: str) -> None:
    for n in names:
        if not getattr(obj, n) > 0:
            raise ValueError(f"{section}.{n} must be > 0, got {getattr(obj, n)!r}")


def _require_non_negative(section: str, obj: Any, *names: str) -> None:
    for n in names:
        if not getattr(obj, n) >= 0:
            raise ValueError(f"{section}.{n} must be >= 0, got {getattr(obj, n)!r}")


def _require_unit_interval(section: str, obj: Any, *names: str) -> None:
    for n in names:
        if not 0 < getattr(obj, n) <= 1:
            raise ValueError(f"{section}.{n} must be in (0, 1], got {getattr(obj, n)!r}")


def _require_at_least_one(section: str, obj: Any, *names: str) -> None:
    for n in names:
        if getattr(obj, n) < 1:
            raise ValueError(f"{section}.{n} must be >= 1, got {getattr(obj, n)!r}")
