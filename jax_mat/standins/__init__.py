"""Stand-in host environments: the Python APIs of SMAC and Bi-DexHands without StarCraft II or Isaac Gym.

What the shipped stand-in experiments (``smac_standin_3m``, ``isaac_standin_reach``), the host-bridge
tests and ``scripts/bench_bridge.py`` step through ``jax_mat.host`` worker processes (select one with
``env.host_env=MODULE:FACTORY``); they are part of the package, so they run from any install:

* ``smax_smac.StarCraft2Env``: SMAC's ``StarCraft2Env`` API over JaxMARL's SMAX battle, run on the host.
* ``dexhands_mujoco``: Bi-DexHands' multi-agent vectorised task API over CPU MuJoCo, heterogeneous arms.

Importing this package is cheap (no JAX, no JaxMARL, no MuJoCo): worker processes import it.
"""
