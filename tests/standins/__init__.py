"""Stand-in host environments: the Python APIs of SMAC and Bi-DexHands without StarCraft II or Isaac Gym.

They are what the host-bridge tests and the bridge learning check step through
``jax_mat.host`` worker processes (select one with ``env.host_env=MODULE:FACTORY``):

* ``smax_smac.StarCraft2Env``: SMAC's ``StarCraft2Env`` API over JaxMARL's SMAX battle, run on the host.
* ``faulty_smac.StarCraft2Env``: a tiny numpy SMAC-API game that can crash, hang or return bad output on cue.
* ``dexhands_mujoco``: Bi-DexHands' multi-agent vectorised task API over CPU MuJoCo, heterogeneous arms.

Importing this package is cheap (no JAX, no JaxMARL, no MuJoCo): worker processes import it.
"""
