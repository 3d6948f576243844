"""The config's keys and their types: dotted keys (``algo.lr``) and values coerced to the declared type.

Every value a YAML file or an override gives is coerced to its field's declared type (``2e6`` becomes the
int 2000000, ``1e-3`` the float 0.001, ``true`` a bool), and every unknown key or value of the wrong type
raises ``ValueError`` with one message saying what is wrong and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Mapping

from jax_mat.config.schema import Config


def sections() -> dict[str, type]:
    """Config's nested dataclass sections: ``{"env": EnvConfig, ...}``."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])}


def schema() -> dict[str, type]:
    """Every settable key, dotted, with its declared type: ``{"algo.lr": float, "seed": int, ...}``."""
    keys = {}
    config_hints = typing.get_type_hints(Config)
    nested = sections()
    for f in dataclasses.fields(Config):
        if f.name in nested:
            hints = typing.get_type_hints(nested[f.name])
            keys.update({f"{f.name}.{g.name}": hints[g.name] for g in dataclasses.fields(nested[f.name])})
        else:
            keys[f.name] = config_hints[f.name]
    return keys


def unknown_key_error(key: str, keys: Mapping[str, type], where: str) -> ValueError:
    """A ``ValueError`` naming ``key`` and the nearest of the known ``keys`` (or the known ones)."""
    close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]!r}?"
    else:
        section = key.split(".", 1)[0]
        same_section = [k for k in keys if k.startswith(section + ".")]
        top_level = [k for k in keys if "." not in k] + [f"{s}.*" for s in sections()]
        hint = "known: " + ", ".join(same_section or top_level)
    return ValueError(f"unknown config key {key!r}; {hint}{where}")


def coerce(key: str, value: Any, typ: type, where: str = "") -> Any:
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
