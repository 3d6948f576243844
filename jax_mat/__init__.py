"""jax_mat: the Multi-Agent Transformer (MAT), MARWKV and the MAPPO/HAPPO baselines trained in one jitted JAX
program (``python -m jax_mat.train``)."""

from jax_mat.versions import __version__

__all__ = ["__version__"]
