"""Test-only stand-in host environments (the ones the shipped configs use live in ``jax_mat.standins``).

* ``faulty_smac.StarCraft2Env``: a tiny numpy SMAC-API game that can crash, hang or return bad output on cue.

Importing this package is cheap (no JAX, no JaxMARL, no MuJoCo): worker processes import it.
"""
