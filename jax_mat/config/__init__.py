"""Run configuration: the schema, reading YAML layers and overrides, and one validation.

A run is described by one ``Config`` (``env``, ``algo``, ``train``, ``seed``, ``name``; ``config.schema``,
where every default lives). ``read_config`` builds it in layers, later layers winning:

1. ``jax_mat/configs/default.yaml`` (the default run: what it changes from the schema's defaults);
2. the algorithm's settings for the environment's domain, from the algorithm table
   (``jax_mat.algos.registry``: e.g. MARWKV's learning rate on SMAC, report Table 2; the domain is
   ``envs.registry.domain(env.name)``: ``smac`` for smax, smax_multi and smac), with ``env.name`` and
   ``algo.name`` as the later layers set them;
3. the named config: a path, or a name such as ``smax_3s5z`` meaning
   ``jax_mat/configs/experiment/smax_3s5z.yaml``;
4. section selectors from the overrides, in the order given: ``algo=mat_dec``
   loads ``jax_mat/configs/algo/mat_dec.yaml``, ``env=smax_3s5z`` loads
   ``jax_mat/configs/env/smax_3s5z.yaml``;
5. when an override sets ``env.map`` (or ``env.task``), the per-map file
   ``jax_mat/configs/env/<env.name>_<env.map>.yaml`` (``<env.name>_<env.task>.yaml``)
   if it exists (the report's per-map epochs, clip and steps);
6. the dotted overrides themselves (``algo.lr=1e-3 train.total_steps=2e6``), so
   a key given explicitly always beats a per-map or selected file.

The ``jax_mat/configs/`` files travel with the package (package data, found through
``importlib.resources`` wherever it is installed); your own YAML files (a named config given as a path,
or its includes) layer on top of them. A YAML file may ``include:`` other files (a path or a list of
paths, relative to ``jax_mat/configs/`` or else to the including file); the including file's own keys
win over its includes, and a later include wins over an earlier one.

Every value is coerced to its field's declared type (``config.coercion``). Reading touches no environment
and no JAX backend; ``validate(config, devices)`` (``config.validation``) then runs every other check,
before anything is traced or compiled: the command line calls it once, after ``jax.distributed`` is up.
``load_config`` is ``read_config`` and ``validate`` in one call.
"""

from jax_mat.config.loading import (CONFIGS_DIR, LEGACY_VALUES, VERSIONS_KEY, config_from_file, config_to_dict,
                                    known_experiments, known_selectors, load_config, read_config,
                                    read_saved_config, save_config, shipped_file, split_cli_args,
                                    update_saved_config)
from jax_mat.config.schema import DISTRIBUTED_MODES, AlgoConfig, Config, EnvConfig, TrainConfig
from jax_mat.config.validation import check_splits_over_devices, validate

__all__ = [
    "AlgoConfig", "CONFIGS_DIR", "Config", "DISTRIBUTED_MODES", "EnvConfig", "LEGACY_VALUES", "TrainConfig",
    "VERSIONS_KEY", "check_splits_over_devices", "config_from_file", "config_to_dict", "known_experiments",
    "known_selectors", "load_config", "read_config", "read_saved_config", "save_config", "shipped_file",
    "split_cli_args", "update_saved_config", "validate",
]
