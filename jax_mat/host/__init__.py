"""Host simulators in worker processes, behind one numpy interface.

This package imports numpy only, never JAX: worker processes import it, and a
worker that also loaded JAX would cost seconds and hundreds of MiB per
(re)start. The JAX side, the ``io_callback`` bridge the jitted rollout calls, is
``jax_mat.envs.host_bridge``.

* ``worker``: the ``HostBatch`` protocol (a few environments of one simulator as
  ``[k, ...]`` numpy arrays) and the worker process's command loop.
* ``pool``: ``HostEnvPool``, ``E`` environments spread over worker processes,
  stepped in parallel, restarting workers that crash or stop answering.
* ``replies``: what a worker's reply must hold (declared shapes, finite values).
* ``smac_api``: ``HostBatch`` over SMAC's ``StarCraft2Env`` API.
* ``bidexhands_api``: ``HostBatch`` over Bi-DexHands' multi-agent vectorised
  task API (torch tensors through DLPack).
"""
