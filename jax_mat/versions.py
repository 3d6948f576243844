"""The versions a run depends on, recorded in its ``config.yaml`` and ``eval.json``.

Results from different JaxMARL versions are not comparable (0.2.0 changed SMAX's dynamics and
observations), so every run records what it ran with.
"""

from __future__ import annotations

import platform
from importlib import metadata


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


__version__ = _installed("jax_mat")

# The packages whose versions change what a run computes.
RECORDED_PACKAGES = ("jax", "jaxlib", "jaxmarl", "mujoco", "mujoco-mjx", "brax", "flax", "optax", "orbax-checkpoint")


def package_versions() -> dict[str, str]:
    """``{"jax_mat": ..., "python": ..., "jax": ..., ...}`` of this interpreter."""
    return {"jax_mat": __version__, "python": platform.python_version(),
            **{name: _installed(name) for name in RECORDED_PACKAGES}}


def version_lines() -> str:
    """``jax_mat 0.1.0`` then one ``  name version`` line per recorded dependency (``--version``)."""
    versions = package_versions()
    return "\n".join([f"jax_mat {versions.pop('jax_mat')}", *(f"  {name} {v}" for name, v in versions.items())])
