"""Library-level runs that need several devices, for ``tests/test_distributed.py``.

Run in a fresh process whose ``XLA_FLAGS`` give it fake CPU devices (the test process has
one device): ``python tests/distributed_worker.py seeds OUT.npz SEED_SHARDS N_SEEDS [key=value ...]``
trains ``N_SEEDS`` seeds with ``distributed.train_seeds`` on a ``(SEED_SHARDS, devices / SEED_SHARDS)``
mesh of every device and writes the final parameters, the metrics and the layout of the
environment state to ``OUT.npz``.
"""

import sys

import jax
import numpy as np

from jax_mat import config as config_lib
from jax_mat.envs.registry import make_env_from_config
from jax_mat.networks.registry import make_policy
from jax_mat.training import distributed
from jax_mat.training.runner import Trainer


def seeds(out: str, seed_shards: int, n_seeds: int, *overrides: str) -> None:
    cfg = config_lib.load_config(None, list(overrides))
    env = make_env_from_config(cfg.env)
    trainer = Trainer(cfg, env, make_policy(env.spec, cfg.algo))
    mesh = distributed.make_mesh(jax.devices(), cfg.train.n_envs, seed_shards)
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    states, metrics = distributed.train_seeds(trainer, keys, mesh)
    obs = states.timestep.obs
    arrays = {f"params/{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(states.params))}
    arrays.update({f"metrics/{k}": np.asarray(v) for k, v in metrics.items()})
    arrays["obs_shard_shape"] = np.asarray(obs.sharding.shard_shape(obs.shape))
    arrays["devices"] = np.asarray(len(jax.devices()))
    np.savez(out, **arrays)


if __name__ == "__main__":
    command, out, seed_shards, n_seeds, *rest = sys.argv[1:]
    assert command == "seeds", command
    seeds(out, int(seed_shards), int(n_seeds), *rest)
