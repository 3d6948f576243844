"""Reading a run's configuration: YAML layers and ``key=value`` overrides, and a run's saved ``config.yaml``.

See ``jax_mat.config`` for the layers and their order. Every function here only reads files and builds
dataclasses; ``read_*`` return what the schema accepts, ``load_config`` and ``config_from_file`` also
``validate`` it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from jax_mat.config import coercion
from jax_mat.config.schema import AlgoConfig, Config, EnvConfig
from jax_mat.config.validation import validate


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
CONFIGS_DIR = _shipped_configs_dir()


def _flatten(tree: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """``{"algo": {"lr": 1}}`` -> ``{"algo.lr": 1}``; sections must be mappings."""
    flat = {}
    sections = coercion.sections()
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
    keys = coercion.schema()
    typed = {}
    for key, value in flat.items():
        if key not in keys:
            raise coercion.unknown_key_error(key, keys, where)
        typed[key] = coercion.coerce(key, value, keys[key], where)
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
    keys = coercion.schema()
    sections = coercion.sections()
    selectors, layer = [], {}
    for override in overrides:
        key, text = _split_override(override)
        if key in sections:
            selectors.append((key, text.strip()))
        elif key not in keys:
            raise coercion.unknown_key_error(key, keys, "")
        else:
            layer[key] = coercion.coerce(key, _parse_value(text, keys[key]), keys[key])
    return selectors, layer


def _build(flat: Mapping[str, Any]) -> Config:
    """A ``Config`` from a flat typed layer (missing keys keep the dataclass defaults); only the schema's own
    checks run (``validate`` runs the others)."""
    sections = coercion.sections()
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


def read_config(config_path: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """A run's ``Config`` from its layers (see ``jax_mat.config``), checked only by the schema.

    Reads YAML and nothing else: no environment, network or JAX backend is touched, so a command line can
    read its config once, join ``jax.distributed`` from ``train`` and then ``validate`` the whole.

    Args:
      config_path: None for the default run, a YAML path, or an experiment
        name (``smax_3s5z`` -> ``jax_mat/configs/experiment/smax_3s5z.yaml``).
      overrides: ``key=value`` strings: dotted keys (``algo.lr=1e-3``,
        ``seed=3``) or section selectors (``algo=mat_dec``, ``env=smax_3s5z``).

    Raises:
      ValueError: unknown key (with the nearest known one), a value of the
        wrong type or out of range, a malformed override, or a missing or
        unreadable file.
    """
    return _build(_layers(config_path, overrides))


def load_config(config_path: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """``read_config`` then ``validate`` (without devices): a run's ``Config``, every mistake a ``ValueError``
    (also an unknown algorithm, environment or map, or options another environment reads)."""
    return validate(read_config(config_path, overrides))


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
    # The algorithm's per-domain settings (the algorithm table's) sit just above the defaults: every file
    # the run names, and every explicit key, still beats them.
    from jax_mat.algos import registry as algos
    from jax_mat.envs import registry as envs

    domain = envs.domain(_current("env.name", EnvConfig.name, *layers))
    algo_name = _current("algo.name", AlgoConfig.name, *layers)
    flat = _load_file(CONFIGS_DIR / "default.yaml")
    flat.update(_typed(algos.domain_defaults(algo_name, domain), f" (algorithm {algo_name} in domain {domain})"))
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


def update_saved_config(cfg: Config, path: str | os.PathLike) -> list[str]:
    """After ``--resume`` with ``key=value`` overrides (``train.total_steps`` to extend a run, say): rewrites the
    run's ``config.yaml`` to the settings it now runs with, keeping the versions it started with, so that the run
    directory says what trained it. Returns the changed keys as ``"train.total_steps: 2000000 -> 5000000"``; the
    file is left alone when nothing changed."""
    before = _flatten(config_to_dict(read_saved_config(path)), f" (in {path})")
    after = _flatten(config_to_dict(cfg), "")
    changed = [f"{key}: {before.get(key)} -> {value}" for key, value in after.items() if before.get(key) != value]
    if changed:
        versions = _read_yaml(Path(path)).get(VERSIONS_KEY)
        save_config(cfg, path, versions if isinstance(versions, dict) else None)
    return changed


def read_saved_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Re-reads a config written by ``save_config`` (for ``--resume``), checked only by the schema.

    Only ``path`` is read (not ``jax_mat/configs/default.yaml``): keys missing from it
    keep the dataclass defaults, or for options added after the run was saved the value it ran with
    (``LEGACY_VALUES``). ``overrides`` may change single keys (for
    example ``train.total_steps=2e6`` to extend a run); selectors such as
    ``algo=mat_dec`` are refused, since a resumed run keeps its algorithm and
    environment.
    """
    return _build(_saved_layers(path, overrides))


def config_from_file(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """``read_saved_config`` then ``validate`` (without devices)."""
    return validate(read_saved_config(path, overrides))


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
