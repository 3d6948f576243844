"""Run configuration: frozen dataclasses, YAML files, dotted overrides, validation.

A run is described by one ``Config`` (``env``, ``algo``, ``train``, ``seed``,
``name``). ``load_config`` builds it in layers, later layers winning:

1. ``jax_mat/configs/default.yaml`` (the default run);
2. the named config: a path, or a name such as ``smax_3s5z`` meaning
   ``jax_mat/configs/experiment/smax_3s5z.yaml``;
3. section selectors from the overrides, in the order given: ``algo=mat_dec``
   loads ``jax_mat/configs/algo/mat_dec.yaml``, ``env=smax_3s5z`` loads
   ``jax_mat/configs/env/smax_3s5z.yaml``;
4. when an override sets ``env.map`` (or ``env.task``), the per-map file
   ``jax_mat/configs/env/<env.name>_<env.map>.yaml`` (``<env.name>_<env.task>.yaml``)
   if it exists (the report's per-map epochs, clip and steps);
5. the dotted overrides themselves (``algo.lr=1e-3 train.total_steps=2e6``), so
   a key given explicitly always beats a per-map or selected file.

Between 1 and 2 sits the algorithm's settings for the environment's domain,
``jax_mat/configs/algo/<domain>/<algo.name>.yaml`` if it exists (the report's
per-domain settings, such as MARWKV's learning rate on SMAC, Table 2; the
domain is ``envs.registry.domain(env.name)``: ``smac`` for smax, smax_multi
and smac), with ``env.name`` and ``algo.name`` as the later layers set them:
any file the run names, and any explicit key, beats it.

The ``jax_mat/configs/`` files travel with the package (package data, found
through ``importlib.resources`` wherever it is installed); your own YAML files
(a named config given as a path, or its includes) layer on top of them.

A YAML file may ``include:`` other files (a path or a list of paths, relative to
``jax_mat/configs/`` or else to the including file); the including file's own keys win
over its includes, and a later include wins over an earlier one.

Every value is coerced to its field's declared type (``2e6`` becomes the int
2000000, ``1e-3`` the float 0.001, ``true`` a bool) and every mistake raises
``ValueError`` with one message saying what is wrong and what is allowed, before
anything is traced or compiled.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import os
import tempfile
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml



def _shipped_configs_dir() -> Path:
    """The folder of the configs shipped with the package (``jax_mat/configs/``, package data).

    Found through ``importlib.resources``, so it is wherever the package is installed (a wheel, ``pip
    install .``, an editable checkout), whatever the working directory. The loader reads them as files (an
    include names a path), so the package must be installed as files on disk, as pip installs it.
    """
    folder = importlib.resources.files("jax_mat") / "configs"
    if not isinstance(folder, Path):
        raise ImportError(
            f"jax_mat reads its shipped configs as files, but the package is imported from {folder!r} "
            f"(not a folder on disk); install it with pip"
        )
    return folder


CONFIGS_DIR = _shipped_configs_dir()
KNOWN_ALGOS = ("mat", "mat_dec", "marwkv", "mat_rwkv", "mappo", "happo")
RWKV_ALGOS = ("marwkv", "mat_rwkv")
MLP_ALGOS = ("mappo", "happo")
DISTRIBUTED_MODES = ("auto", "on", "off")


# --------------------------------------------------------------------------- #
# The dataclasses                                                               #
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which environment to train on; each environment reads the fields it names below.

    ``jax_mat.envs.registry`` checks the fields against the environment
    ``name`` (unknown maps, tasks or joints are errors here, before any jit).
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

    def __post_init__(self):
        from jax_mat.envs import registry

        registry.check_env_config(self)

    @property
    def variant(self) -> str:
        """What names the run's task: the map (smax, smac), the task (mujoco, isaac) or the map list."""
        from jax_mat.envs import registry

        return registry.env_variant(self)


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """Algorithm, PPO and network settings (upstream MAT on SMAC, report Tables 1-3)."""

    name: str = "mat"  # known: mat, mat_dec, marwkv, mat_rwkv (MAT encoder + RWKV decoder), mappo, happo
    lr: float = 5e-4
    opti_eps: float = 1e-5
    ppo_epochs: int = 10
    num_mini_batch: int = 1
    clip: float = 0.05
    entropy_coef: float = 0.01
    value_loss_coef: float = 1.0
    max_grad_norm: float = 10.0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    huber_delta: float = 10.0
    use_huber_loss: bool = True
    use_valuenorm: bool = True
    use_clipped_value_loss: bool = True
    use_value_active_masks: bool = False  # as upstream's SMAC, MuJoCo and hands scripts (a store_false flag they pass)
    use_policy_active_masks: bool = True
    use_proper_time_limits: bool = False  # bootstrap through time limits (MuJoCo); SMAC/SMAX: they are terminal
    n_block: int = 1
    n_embd: int = 64  # the hidden width (MAPPO/HAPPO: of each MLP layer)
    n_head: int = 1
    dec_actor: bool = False  # True for mat_dec
    share_actor: bool = False  # mat_dec: one actor MLP for all agents (upstream forces it on for mat_dec)
    rwkv_version: int = 4  # marwkv, mat_rwkv: RWKV-4, -5 or -6 blocks
    wkv_impl: str = "auto"  # marwkv, mat_rwkv: the WKV operator (jax_mat.ops.wkv.IMPLS; auto: Pallas on a GPU)
    mlp_layers: int = 2  # mappo, happo: hidden layers of the actor and critic MLPs
    zero_std: bool = False  # mat, mat_dec, marwkv, mat_rwkv, continuous actions: log_std starts at 0 (upstream's
    #                         zero_std(), which its Bi-DexHands runner calls), not 1

    def __post_init__(self):
        if self.name not in KNOWN_ALGOS:
            raise ValueError(f"unknown algorithm {self.name!r} (algo.name); known: {', '.join(KNOWN_ALGOS)}")
        # MAT with a decentralised actor *is* MAT-Dec: keep run names honest.
        if self.dec_actor != (self.name == "mat_dec"):
            raise ValueError(
                f"algo.name={self.name} needs algo.dec_actor={'true' if self.name == 'mat_dec' else 'false'}, "
                f"got {str(self.dec_actor).lower()}; use algo=mat_dec or algo=mat to select an algorithm"
            )
        _require_positive("algo", self, "lr", "opti_eps", "clip", "max_grad_norm", "huber_delta")
        _require_non_negative("algo", self, "entropy_coef", "value_loss_coef")
        _require_unit_interval("algo", self, "gamma", "gae_lambda")
        _require_at_least_one("algo", self, "ppo_epochs", "num_mini_batch", "n_block", "n_embd", "n_head", "mlp_layers")
        if self.share_actor and self.name != "mat_dec":
            raise ValueError(
                f"algo.share_actor applies to mat_dec only, not {self.name} "
                "(mappo always shares one actor, happo always has one per agent)"
            )
        if self.n_embd % self.n_head:
            raise ValueError(f"algo.n_embd ({self.n_embd}) must be divisible by algo.n_head ({self.n_head})")
        if self.rwkv_version not in (4, 5, 6):
            raise ValueError(f"algo.rwkv_version must be 4, 5 or 6, got {self.rwkv_version!r}")
        if self.name in RWKV_ALGOS:
            self.network_config()  # the network's own checks (e.g. v6's minimum width), before any jit
            if self.wkv_impl == "pallas":
                import jax

                if jax.default_backend() != "gpu":
                    raise ValueError(
                        f"algo.wkv_impl=pallas needs a GPU (the default backend is {jax.default_backend()}); "
                        "use algo.wkv_impl=scan or auto"
                    )

    def loss_config(self):
        """The PPO objective's settings as ``jax_mat.algos.ppo.LossConfig``."""
        from jax_mat.algos.ppo import LossConfig

        return _project(self, LossConfig)

    def network_config(self):
        """The network's settings: ``MATConfig`` (mat, mat_dec), ``MARWKVConfig`` (marwkv, mat_rwkv) or
        ``MLPConfig`` (mappo, happo)."""
        if self.name in MLP_ALGOS:
            from jax_mat.networks.mlp import MLPConfig

            mappo = self.name == "mappo"
            return MLPConfig(hidden=self.n_embd, n_layers=self.mlp_layers, share_actor=mappo, agent_critic=mappo)
        if self.name in RWKV_ALGOS:
            from jax_mat.networks.marwkv import MARWKVConfig

            return MARWKVConfig(
                version=self.rwkv_version,
                n_block=self.n_block,
                n_embd=self.n_embd,
                n_head=self.n_head,
                hybrid=self.name == "mat_rwkv",
                wkv_impl=self.wkv_impl,
                zero_std=self.zero_std,
            )
        from jax_mat.networks.mat import MATConfig

        return _project(self, MATConfig)


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


def check_splits_over_devices(env_name: str, n_devices: int) -> None:
    """``ValueError`` unless environment ``env_name`` can be split over ``n_devices`` devices (host bridges and smax_multi cannot)."""
    from jax_mat.envs import registry

    if n_devices > 1 and not registry.supports_device_splits(env_name):
        raise ValueError(
            f"env.name={env_name} cannot be split over {n_devices} devices (train.devices): "
            f"{registry.no_device_split_reason(env_name)}; use train.devices=1"
        )


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
        if t.seeds > 1:
            from jax_mat.envs import registry

            if not registry.supports_seed_sweeps(self.env.name):
                raise ValueError(
                    f"train.seeds={t.seeds} (a vmapped seed sweep) cannot run env.name={self.env.name}: its host "
                    "simulators are stepped by an ordered callback, which jax.vmap refuses; run one seed per process"
                )
        if t.device_count is not None and t.device_count > 1:
            check_splits_over_devices(self.env.name, t.device_count)
        if t.total_steps < self.batch_size:
            raise ValueError(
                f"train.total_steps ({t.total_steps}) is less than one update, train.n_envs * train.episode_length "
                f"= {t.n_envs} * {t.episode_length} = {self.batch_size}"
            )
        from jax_mat.envs import registry

        registry.check_run_config(self)

    @property
    def run_algo_name(self) -> str:
        """The algorithm as runs and tables name it: ``algo.name``, with ``_v5``/``_v6`` for RWKV versions other than 4."""
        algo = self.algo.name
        if algo in RWKV_ALGOS and self.algo.rwkv_version != 4:
            algo = f"{algo}_v{self.algo.rwkv_version}"
        return algo

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


def _project(source: Any, target_cls: type) -> Any:
    """Builds ``target_cls`` from the fields it shares with ``source``."""
    names = {f.name for f in dataclasses.fields(target_cls)} & {f.name for f in dataclasses.fields(source)}
    return target_cls(**{n: getattr(source, n) for n in names})


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


# --------------------------------------------------------------------------- #
# Schema and value coercion                                                     #
# --------------------------------------------------------------------------- #


def _sections() -> dict[str, type]:
    """Config's nested dataclass sections: ``{"env": EnvConfig, ...}``."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])}


def _schema() -> dict[str, type]:
    """Every settable key, dotted, with its declared type: ``{"algo.lr": float, "seed": int, ...}``."""
    schema = {}
    config_hints = typing.get_type_hints(Config)
    sections = _sections()
    for f in dataclasses.fields(Config):
        if f.name in sections:
            hints = typing.get_type_hints(sections[f.name])
            schema.update({f"{f.name}.{g.name}": hints[g.name] for g in dataclasses.fields(sections[f.name])})
        else:
            schema[f.name] = config_hints[f.name]
    return schema


def _unknown_key_error(key: str, schema: Mapping[str, type], where: str) -> ValueError:
    """A ``ValueError`` naming ``key`` and the nearest known key (or the known ones)."""
    close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        section = key.split(".", 1)[0]
        same_section = [k for k in schema if k.startswith(section + ".")]
        top_level = [k for k in schema if "." not in k] + [f"{s}.*" for s in _sections()]
        hint = "known: " + ", ".join(same_section or top_level)
    return ValueError(f"unknown config key {key!r}; {hint}{where}")


def _coerce(key: str, value: Any, typ: type, where: str = "") -> Any:
    """``value`` as ``typ`` (int, float, bool or str), or a ``ValueError`` naming ``key``."""
    if typ is bool:
        result = _as_bool(value)
        expected = "true or false"
    elif typ is int:
        result = _as_int(value)
        expected = "an integer"
    elif typ is float:
        result = _as_float(value)
        expected = "a finite number"
    elif typ is str:
        result = _as_str(value)
        expected = "a string"
    elif typ == tuple[str, ...]:
        result = _as_str_tuple(value)
        expected = "a list of names such as [a, b] (or one name)"
    else:
        raise TypeError(f"config field {key} has unsupported type {typ}")
    if result is None:
        raise ValueError(f"{key} must be {expected}, got {value!r}{where}")
    return result


def _as_bool(value: Any) -> bool | None:
    """A bool, or ``"true"``/``"false"`` in any case; None otherwise (no 0/1)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _as_int(value: Any) -> int | None:
    """An int, or an integral float or numeric string (``2e6``); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    number = _as_float(value)
    return int(number) if number is not None and number.is_integer() else None


def _as_float(value: Any) -> float | None:
    """A finite float from an int, float or numeric string (``1e-3``); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _as_str_tuple(value: Any) -> tuple[str, ...] | None:
    """A tuple of strings from a list/tuple of names or one name (``bthigh`` -> ``("bthigh",)``); None otherwise."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")] if value.strip() else []
    if not isinstance(value, (list, tuple)):
        return None
    names = tuple(_as_str(v) for v in value)
    return None if any(n is None or not n for n in names) else names


def _as_str(value: Any) -> str | None:
    """A string; numbers (a YAML ``name: 2024``) become their text; None otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


# --------------------------------------------------------------------------- #
# Layers: YAML files and overrides as flat {dotted key: typed value} dicts      #
# --------------------------------------------------------------------------- #


def _flatten(tree: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """``{"algo": {"lr": 1}}`` -> ``{"algo.lr": 1}``; sections must be mappings."""
    flat = {}
    sections = _sections()
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if value is None and dotted in sections:
            continue  # an empty section (``algo:`` with nothing under it)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, where, dotted + "."))
        elif dotted in sections:
            raise ValueError(
                f"config key {dotted!r} is a section and needs a mapping (e.g. {dotted}: {{...}}), "
                f"got {value!r}{where}"
            )
        else:
            flat[dotted] = value
    return flat


def _typed(flat: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Checks every key of ``flat`` and coerces its value to the declared type."""
    schema = _schema()
    typed = {}
    for key, value in flat.items():
        if key not in schema:
            raise _unknown_key_error(key, schema, where)
        typed[key] = _coerce(key, value, schema[key], where)
    return typed


def _resolve_include(name: str, including_file: Path) -> Path:
    """An include path: absolute, or relative to ``jax_mat/configs/``, or to the including file."""
    path = Path(name)
    candidates = [path] if path.is_absolute() else [CONFIGS_DIR / path, including_file.parent / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ValueError(f"{including_file}: included file {name!r} not found (looked in {CONFIGS_DIR} and beside it)")


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file (``{}`` for an empty file)."""
    try:
        with open(path) as f:
            tree = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse config file {path}: {e}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(tree).__name__}")
    return tree


def _load_file(path: Path, _stack: tuple[Path, ...] = (), saved: bool = False) -> dict[str, Any]:
    """A YAML file as a flat typed layer, its includes merged underneath its own keys.

    ``saved``: a run's ``config.yaml``, whose ``versions`` record (``save_config``) is not a setting.
    """
    path = Path(path).resolve()
    if path in _stack:
        cycle = " -> ".join(str(p) for p in (*_stack, path))
        raise ValueError(f"config files include each other in a cycle: {cycle}")
    tree = _read_yaml(path)
    if saved:
        tree.pop(VERSIONS_KEY, None)
    includes = tree.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ValueError(f"{path}: 'include' must be a path or a list of paths, got {includes!r}")
    layer = {}
    for name in includes:
        layer.update(_load_file(_resolve_include(name, path), (*_stack, path)))
    layer.update(_typed(_flatten(tree, f" (in {path})"), f" (in {path})"))
    return layer


def _yaml_files(folder: Path) -> list[str]:
    """Names (without ``.yaml``) of the YAML files in ``folder``, sorted."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _named_config_path(config: str) -> Path:
    """A config argument as a file: an existing path, else ``jax_mat/configs/experiment/<name>.yaml``."""
    path = Path(config)
    if path.is_file():
        return path
    stem = config[: -len(".yaml")] if config.endswith(".yaml") else config
    for candidate in (CONFIGS_DIR / "experiment" / f"{stem}.yaml", CONFIGS_DIR / f"{stem}.yaml"):
        if candidate.is_file():
            return candidate
    known = known_experiments()
    close = difflib.get_close_matches(stem, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(
        f"config {config!r} not found: not a file, and no {CONFIGS_DIR / 'experiment' / (stem + '.yaml')}; "
        f"{hint}known experiments: {', '.join(known)}"
    )


def _section_file(section: str, name: str) -> Path:
    """``jax_mat/configs/<section>/<name>.yaml`` for a selector such as ``algo=mat_dec``."""
    path = shipped_file(section, name)
    if path.is_file():
        return path
    known = _yaml_files(CONFIGS_DIR / section)
    noun = "algorithm" if section == "algo" else f"{section} config"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown {noun} {name!r} ({section}={name}); {hint}known: {', '.join(known) or 'none'}")


def _split_override(override: str) -> tuple[str, str]:
    """``"algo.lr=1e-3"`` -> ``("algo.lr", "1e-3")``."""
    key, sep, value = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"malformed override {override!r}; expected key=value, e.g. algo.lr=1e-3 or env.map=3s5z")
    return key, value


def _parse_value(text: str, typ: type) -> Any:
    """An override's text as YAML would read it; strings stay verbatim."""
    if typ is str:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _parse_overrides(overrides: Sequence[str]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Splits overrides into section selectors ``[(section, name)]`` and a flat typed layer."""
    schema = _schema()
    sections = _sections()
    selectors, layer = [], {}
    for override in overrides:
        key, text = _split_override(override)
        if key in sections:
            selectors.append((key, text.strip()))
        elif key not in schema:
            raise _unknown_key_error(key, schema, "")
        else:
            layer[key] = _coerce(key, _parse_value(text, schema[key]), schema[key])
    return selectors, layer


def _build(flat: Mapping[str, Any]) -> Config:
    """A validated ``Config`` from a flat typed layer (missing keys keep the dataclass defaults)."""
    sections = _sections()
    parts: dict[str, dict[str, Any]] = {name: {} for name in sections}
    top = {}
    for key, value in flat.items():
        section, _, field = key.partition(".")
        if field:
            parts[section][field] = value
        else:
            top[key] = value
    return Config(**{name: cls(**parts[name]) for name, cls in sections.items()}, **top)


# --------------------------------------------------------------------------- #
# Public API                                                                    #
# --------------------------------------------------------------------------- #


def known_experiments() -> tuple[str, ...]:
    """Names accepted as ``config_path`` from ``jax_mat/configs/experiment/`` (``smax_3m``, ...)."""
    return tuple(_yaml_files(CONFIGS_DIR / "experiment"))


def known_selectors(section: str) -> tuple[str, ...]:
    """Names a selector accepts: ``known_selectors("algo")`` -> ``("happo", "mappo", ...)`` for ``algo=NAME``."""
    return tuple(_yaml_files(CONFIGS_DIR / section))


def shipped_file(section: str, name: str) -> Path:
    """The shipped YAML file of selector ``section=name`` (``section="experiment"``: a named config)."""
    return CONFIGS_DIR / section / f"{name}.yaml"


def split_cli_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """Splits ``[CONFIG] [key=value ...]`` into the config name (or None) and the overrides.

    Only the first argument may lack ``=``; any later one is a malformed
    override, reported by ``load_config``.
    """
    args = list(args)
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def load_config(config_path: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """Builds and validates a run's ``Config`` (see the module docstring for the layers).

    Args:
      config_path: None for the default run, a YAML path, or an experiment
        name (``smax_3s5z`` -> ``jax_mat/configs/experiment/smax_3s5z.yaml``).
      overrides: ``key=value`` strings: dotted keys (``algo.lr=1e-3``,
        ``seed=3``) or section selectors (``algo=mat_dec``, ``env=smax_3s5z``).

    Raises:
      ValueError: unknown key (with the nearest known one), a value of the
        wrong type or out of range, an unknown algorithm, environment or map,
        a malformed override, or a missing or unreadable file.
    """
    return _build(_layers(config_path, overrides))


def load_train_config(config_path: str | None = None, overrides: Sequence[str] = (),
                      saved: str | os.PathLike | None = None) -> TrainConfig:
    """Only the ``train`` section of ``load_config(config_path, overrides)``, or with ``saved`` of
    ``config_from_file(saved, overrides)``, checked on its own.

    What a process needs to join a multi-process run, which must happen before anything starts
    JAX's backends; building the other sections does (the environment checks import JaxMARL).
    """
    flat = _saved_layers(saved, overrides) if saved is not None else _layers(config_path, overrides)
    return TrainConfig(**{k.partition(".")[2]: v for k, v in flat.items() if k.startswith("train.")})


def _layers(config_path: str | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The flat typed layer ``load_config`` builds from."""
    selectors, explicit = _parse_overrides(overrides)
    layers = []
    if config_path is not None:
        layers.append(_load_file(_named_config_path(config_path)))
    for section, name in selectors:
        layers.append(_load_file(_section_file(section, name)))
    for variant_key in ("env.map", "env.task"):
        if variant_key in explicit:
            env_name = _current("env.name", EnvConfig.name, *layers, explicit)
            per_variant = CONFIGS_DIR / "env" / f"{env_name}_{explicit[variant_key]}.yaml"
            if per_variant.is_file():
                layers.append(_load_file(per_variant))
    layers.append(explicit)
    # The algorithm's per-domain settings sit just above the defaults: every file the run names, and
    # every explicit key, still beats them.
    from jax_mat.envs import registry

    domain = registry.domain(_current("env.name", EnvConfig.name, *layers))
    algo_name = _current("algo.name", AlgoConfig.name, *layers)
    domain_algo = CONFIGS_DIR / "algo" / domain / f"{algo_name}.yaml"
    flat = _load_file(CONFIGS_DIR / "default.yaml")
    if domain_algo.is_file():
        flat.update(_load_file(domain_algo))
    for layer in layers:
        flat.update(layer)
    return flat


def _current(key: str, default: Any, *layers: Mapping[str, Any]) -> Any:
    """``key``'s value in the last layer that sets it (else ``default``)."""
    for layer in reversed(layers):
        if key in layer:
            return layer[key]
    return default


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as nested plain data (tuples as lists): ``{"env": {...}, "algo": {...}, "train": {...}, "seed": 0, ...}``."""
    return dataclasses.asdict(cfg, dict_factory=lambda items: {k: list(v) if isinstance(v, tuple) else v
                                                                 for k, v in items})


VERSIONS_KEY = "versions"  # in a saved config.yaml: the package versions the run started with (not a setting)


def save_config(cfg: Config, path: str | os.PathLike, versions: Mapping[str, str] | None = None) -> None:
    """Writes ``cfg`` as YAML, atomically (a temporary file in the same folder, then ``os.replace``), with
    ``versions`` (``jax_mat.versions.package_versions()``) recorded under ``versions:`` when given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = config_to_dict(cfg)
    if versions:
        record[VERSIONS_KEY] = dict(versions)
    text = f"# resolved config of run {cfg.run_name!r}, written by jax_mat\n" + yaml.safe_dump(record, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def config_from_file(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Re-reads a config written by ``save_config`` (for ``--resume``).

    Only ``path`` is read (not ``jax_mat/configs/default.yaml``): keys missing from it
    keep the dataclass defaults. ``overrides`` may change single keys (for
    example ``train.total_steps=2e6`` to extend a run); selectors such as
    ``algo=mat_dec`` are refused, since a resumed run keeps its algorithm and
    environment.
    """
    return _build(_saved_layers(path, overrides))


def _saved_layers(path: str | os.PathLike, overrides: Sequence[str]) -> dict[str, Any]:
    """The flat typed layer ``config_from_file`` builds from."""
    selectors, explicit = _parse_overrides(overrides)
    if selectors:
        section, name = selectors[0]
        raise ValueError(f"cannot apply {section}={name} to the saved config {path}; only key=value overrides apply")
    flat = _load_file(Path(path), saved=True)
    from jax_mat.envs import registry

    reads = registry.env_fields(flat.get("env.name", EnvConfig.name))
    for key, value in LEGACY_VALUES.items():
        if key not in flat and key.partition(".")[2] in reads:
            flat[key] = value  # a run saved before the option existed ran as it still does with this value
    flat.update(explicit)
    return flat


# Options added after runs were saved without them: the value that keeps such a run what it was
# (``config_from_file`` fills them in for the environments that read them).
LEGACY_VALUES = {"env.time_limit": "jaxmarl", "env.obs_agent_id": False, "env.obs_last_action": False}
