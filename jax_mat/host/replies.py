"""What a worker's reply must hold: the declared shapes and finite values, checked on the host.

Output that is not what the batch's ``info`` declares (a wrong shape, NaN or inf) raises ``HostEnvError``
naming the environment and the step: a bug in the host environment, which a restart would not cure.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


class HostEnvError(ValueError):
    """A host environment returned bad output (wrong shape, NaN/inf); the message names the env and step."""


def expected_shapes(info: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Per-environment shapes of every field (without the leading ``[k]``), from a batch's ``info``."""
    n, o, s, a = info["n_agents"], info["obs_dim"], info["state_dim"], info["action_dim"]
    return {
        "obs": (n, o), "state": (s,), "avail": (n, a), "active": (n,),
        "reward": (n,), "done": (), "truncated": (), "won": (),
    }  # fmt: skip


def checked_arrays(reply: tuple[str, Any], fields: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]],
                   n_envs: int, first_env: int, name: str, where: str, step: int) -> dict[str, np.ndarray]:
    """The ``fields`` of a worker's ``(kind, payload)`` reply for its ``n_envs`` environments (from
    ``first_env`` on), as their dtypes; ``HostEnvError`` (naming ``name``, ``where`` and ``step``) on a
    missing field, a shape other than ``[n_envs, *shapes[field]]`` or a non-finite float."""
    kind, payload = reply
    if kind == "bad_output":
        raise HostEnvError(f"{name} ({where}) at step {step}: {payload}")
    if kind != "ok" or not isinstance(payload, Mapping):
        raise HostEnvError(f"{name} ({where}) sent {kind!r} at step {step}")
    arrays = {}
    for field, dtype in fields.items():
        if field not in payload:
            raise HostEnvError(f"{name} ({where}) returned no {field!r} at step {step}")
        value = np.asarray(payload[field])
        expected = (n_envs, *shapes[field])
        if value.shape != expected:
            raise HostEnvError(
                f"{name} ({where}) returned {field} of shape {value.shape} at step {step}; "
                f"expected {expected} [envs, ...]"
            )
        if dtype is np.float32:
            finite = np.isfinite(value).reshape(n_envs, -1).all(axis=1)
            if not finite.all():
                env = first_env + int(np.argmin(finite))
                raise HostEnvError(
                    f"{name} returned a non-finite (NaN or inf) {field} for env {env} ({where}) at step {step}"
                )
        arrays[field] = value.astype(dtype, copy=False)
    return arrays
