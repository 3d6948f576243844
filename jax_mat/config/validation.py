"""``validate(config, devices)``: every check a run's config needs beyond its schema, in one place.

The schema (``config.schema``) checks what each section can check alone. What needs another part of the
package is checked here, before anything is traced, compiled or written: the environment and its options
(``envs.registry``), the algorithm and its network (``algos.registry``: a network's own limits, such as
RWKV-6's minimum width), what the environment allows of the run (no vmapped seed sweep over host
simulators, ``smax_multi``'s equal share of environments per map) and, given the devices the run may use
(after ``jax.distributed`` has joined every process), ``train.devices`` and ``train.seed_shards`` against
them and the WKV kernel against their platform.
"""

from __future__ import annotations

from typing import Any, Sequence

from jax_mat.config.schema import Config


def validate(config: Config, devices: Sequence[Any] | None = None) -> Config:
    """Returns ``config`` unchanged, or raises ``ValueError`` saying what is wrong and what is allowed.

    ``devices``: the devices the run may use (``jax.devices()``, every process's); None skips the checks
    that need them, except the WKV kernel's, which then asks for JAX's default backend.
    """
    from jax_mat.envs import registry as envs

    envs.check_env_config(config.env)
    _check_algo(config.algo, devices)
    train = config.train
    if train.seeds > 1 and not envs.supports_seed_sweeps(config.env.name):
        raise ValueError(
            f"train.seeds={train.seeds} (a vmapped seed sweep) cannot run env.name={config.env.name}: its host "
            "simulators are stepped by an ordered callback, which jax.vmap refuses; run one seed per process"
        )
    if train.device_count is not None and train.device_count > 1:
        check_splits_over_devices(config.env.name, train.device_count)
    envs.check_run_config(config)
    if devices is not None:
        from jax_mat.training import distributed

        mesh = distributed.make_mesh(distributed.select_devices(train.devices, devices), train.n_envs,
                                     train.seed_shards)
        check_splits_over_devices(config.env.name, mesh.size)  # what train.devices=all found
    return config


def _check_algo(algo: Any, devices: Sequence[Any] | None) -> None:
    from jax_mat.algos import registry

    registry.algorithm(algo.name)
    # MAT with a decentralised actor *is* MAT-Dec: keep run names honest.
    if algo.dec_actor != (algo.name == "mat_dec"):
        raise ValueError(
            f"algo.name={algo.name} needs algo.dec_actor={'true' if algo.name == 'mat_dec' else 'false'}, "
            f"got {str(algo.dec_actor).lower()}; use algo=mat_dec or algo=mat to select an algorithm"
        )
    if algo.share_actor and algo.name != "mat_dec":
        raise ValueError(
            f"algo.share_actor applies to mat_dec only, not {algo.name} "
            "(mappo always shares one actor, happo always has one per agent)"
        )
    network = registry.network_config(algo)  # the network's own checks (e.g. v6's minimum width)
    if getattr(network, "wkv_impl", "") == "pallas":
        if devices is None:
            import jax

            platform = jax.default_backend()
        else:
            platform = devices[0].platform
        if platform != "gpu":
            raise ValueError(
                f"algo.wkv_impl=pallas needs a GPU (the default backend is {platform}); "
                "use algo.wkv_impl=scan or auto"
            )


def check_splits_over_devices(env_name: str, n_devices: int) -> None:
    """``ValueError`` unless environment ``env_name`` can be split over ``n_devices`` devices (host bridges and
    smax_multi cannot)."""
    from jax_mat.envs import registry

    if n_devices > 1 and not registry.supports_device_splits(env_name):
        raise ValueError(
            f"env.name={env_name} cannot be split over {n_devices} devices (train.devices): "
            f"{registry.no_device_split_reason(env_name)}; use train.devices=1"
        )
