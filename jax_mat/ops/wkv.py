"""WKV operators of RWKV-4, -5 and -6: one signature per version, two implementations.

The "time" axis ``T`` is the **agent** axis in MARWKV. Shapes: ``B`` batch,
``T`` sequence, ``C`` channels; v5/v6 split ``C = H * N`` into ``H`` heads of
size ``N``.

* ``wkv4(time_decay [C], time_first [C], k, v [B, T, C]) -> y [B, T, C]``::

      y_t = (sum_{i<t} e^{(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
            / (sum_{i<t} e^{(t-1-i) w + k_i}     + e^{u + k_t})

  with ``w = -exp(time_decay)``, ``u = time_first``, computed in the running-max
  form of upstream's CUDA kernel (``wkv_cuda.cu``), so keys of any size are safe.
* ``wkv6(r, k, v, w [B, T, C], u [H, N]) -> y [B, T, C]``, per head, with an
  ``N x N`` state ``S`` (key index ``j``, value index ``i``) starting at zero::

      y_t[i]  = sum_j r_t[j] (u[j] k_t[j] v_t[i] + S[j, i])
      S[j, i] = S[j, i] exp(-exp(w_t[j])) + k_t[j] v_t[i]

* ``wkv5(r, k, v, time_decay [H, N], u [H, N])``: ``wkv6`` with the decay
  static over time (RWKV-5 "Eagle").

Each has a one-step form (``wkv4_step`` ...) carrying an O(1) state, for
recurrent decoding, and a segment form (``wkv4_segment`` ...) that continues a
whole ``[B, S, C]`` stretch from such a state and returns the state after it
(``lax.scan`` of the step); ``lax.scan`` of the step from the empty state is
the parallel form's reference. They agree exactly for v5/v6 and up to
rounding for v4, whose step and segment forms (what ``act`` runs) get each
max-normalised pair of exponentials from one ``exp``. ``impl`` picks the
implementation of the parallel form: ``"scan"`` (this module, the reference),
``"chunked"`` (``wkv4_chunked``: the same recurrence run within chunks of
``T`` for all chunks at once, then across chunks; ``wkv5_chunked`` /
``wkv6_chunked``: a causal ``L x L`` product within each chunk and the
matrix state carried only across chunks), ``"pallas"`` (the kernels of
``pallas_kernels.wkv4`` / ``pallas_kernels.wkv6``; on a CPU only with
``interpret=True``) or ``"auto"``: Pallas on a GPU; elsewhere the form that
measured faster on the CPU (``AUTO_OFF_GPU``): the scan for v4, the chunked
form for v5/v6 (forward + backward at ``[3200, 3, 64]``, SMAX 3m's
shape: 25x faster than the scan, ``docs/benchmarks.md``). On a GPU ``"auto"``
first checks once per process that the kernel compiles, runs and agrees with
the scan at a tiny shape (``kernel_failure``) and says in one log line what it
chose; a kernel that fails there (a jax without the Pallas backend it is
written for, a compiler error on that card) is replaced by ``AUTO_OFF_GPU``'s
form instead of failing the run.

Accumulation is in float32 for narrower inputs (bfloat16, float16) and in the
input's own precision otherwise (float64 under x64); outputs keep the dtype of
``k``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp

IMPLS = ("scan", "chunked", "pallas", "auto")
CHUNK = 16  # positions per chunk of the chunked forms
# What impl="auto" runs without a GPU: the faster exact form measured on the CPU (docs/benchmarks.md).
AUTO_OFF_GPU = {"wkv4": "scan", "wkv5": "chunked", "wkv6": "chunked"}
_NEG_INF = -1e38  # upstream's initial running max
PROBE_SHAPE = (2, 5, 64)  # [B, T, C] of kernel_failure's check: v6 as one head of 64, upstream's head size
_LOG = logging.getLogger(__name__)


class WKV4State(NamedTuple):
    """Running numerator ``aa``, denominator ``bb`` and exponent ``pp``, each ``[B, C]``."""

    aa: jax.Array
    bb: jax.Array
    pp: jax.Array


# --------------------------------------------------------------------------- #
# Checks and dispatch                                                           #
# --------------------------------------------------------------------------- #


def _check_float(name: str, x) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got {x.dtype}")


def _check_same(op: str, what: str, named: dict) -> None:
    """All arrays in ``named`` share ``what`` ("shape" or "dtype")."""
    values = {n: getattr(x, what) for n, x in named.items()}
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{n} {tuple(v) if what == 'shape' else v}" for n, v in values.items())
        raise ValueError(f"{op}: {', '.join(named)} must have the same {what}, got {listed}")


def _acc_dtype(*dtypes) -> jnp.dtype:
    """float32 for bfloat16/float16 inputs, else the widest input type."""
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def _on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def _resolve_impl(op: str, impl: str, interpret: bool, kernel_module: str) -> str:
    """The implementation ``op`` runs."""
    if impl not in IMPLS:
        raise ValueError(f"unknown WKV impl {impl!r}; allowed: {', '.join(map(repr, IMPLS))}")
    on_gpu = _on_gpu()
    if impl == "auto":
        return _auto_on_gpu(op, kernel_module) if on_gpu else AUTO_OFF_GPU[op]
    if impl == "pallas" and not on_gpu and not interpret:
        raise ValueError(
            f"WKV impl='pallas' needs a GPU (the default backend is {jax.default_backend()!r}); "
            "pass interpret=True to run the kernel in Pallas interpret mode, or use impl='scan'"
        )
    return impl


@functools.cache
def _auto_on_gpu(op: str, kernel_module: str) -> str:
    """``"pallas"`` when the kernel works on this GPU, else ``AUTO_OFF_GPU[op]``; logs the choice once."""
    failure = kernel_failure(kernel_module)
    device = jax.devices()[0].device_kind
    if failure is None:
        _LOG.warning("jax_mat: WKV impl=auto for %s on %s: the Pallas kernel (pallas_kernels.%s)", op, device,
                     kernel_module)
        return "pallas"
    fallback = AUTO_OFF_GPU[op]
    _LOG.warning("jax_mat: WKV impl=auto for %s on %s: impl=%r, since the Pallas kernel failed its check (%s)",
                 op, device, fallback, failure)
    return fallback


@functools.cache
def kernel_failure(kernel_module: str, interpret: bool = False) -> str | None:
    """Why ``pallas_kernels.<kernel_module>`` cannot serve on the default device, or ``None`` when it compiles,
    runs, and its output and every gradient agree with the scan (relative 1e-3) at ``PROBE_SHAPE``.

    Called while a function is being traced (``auto`` is resolved there), it still runs eagerly: in a thread of
    its own, whose JAX trace state is fresh.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_check_kernel, kernel_module, interpret).result()


def _check_kernel(kernel_module: str, interpret: bool) -> str | None:
    b, t, c = PROBE_SHAPE
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    try:
        if kernel_module == "wkv4":
            kernel = _kernel("wkv4", "wkv4_pallas")
            args = [jax.random.normal(keys[0], (c,)) - 1.0, jax.random.normal(keys[1], (c,)),
                    *(jax.random.normal(key, (b, t, c)) for key in keys[2:4])]
            reference = wkv4_scan
        else:
            kernel = _kernel(kernel_module, "wkv6_pallas")
            args = [*(jax.random.normal(key, (b, t, c)) for key in keys[:4]), jax.random.normal(keys[4], (1, c))]
            reference = wkv6_scan
        g = jax.random.normal(keys[5], (b, t, c))
        got = _value_and_vjp(lambda *a: kernel(*a, interpret=interpret), args, g)
        want = _value_and_vjp(reference, args, g)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            err = float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-6))
            if not err <= 1e-3:  # also catches NaN
                return f"relative difference {err:.2g} from the scan"
    except Exception as err:  # noqa: BLE001 - any failure (import, lowering, compiling, running) means "do not use"
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return f"{type(err).__name__}: {first}"
    return None


def _value_and_vjp(fn, args, g):
    """``fn(*args)`` and its vjp against ``g``, one jitted program."""

    def run(args, g):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(g)

    return jax.jit(run)(args, g)


def _kernel(module: str, name: str):
    """``pallas_kernels.<module>.<name>``, imported on first use."""
    try:
        mod = importlib.import_module(f"pallas_kernels.{module}")
    except ModuleNotFoundError as err:
        if err.name not in ("pallas_kernels", f"pallas_kernels.{module}"):
            raise
        raise ImportError(
            f"WKV impl='pallas' needs pallas_kernels/{module}.py (function {name}), which is not installed; "
            "use impl='scan'"
        ) from None
    if not hasattr(mod, name):
        raise ImportError(f"pallas_kernels.{module} has no {name}(); use impl='scan'")
    return getattr(mod, name)


def _time_major(*xs):
    return tuple(jnp.swapaxes(x, 0, 1) for x in xs)


# --------------------------------------------------------------------------- #
# RWKV-4                                                                        #
# --------------------------------------------------------------------------- #


def wkv4_init_state(batch: int, channels: int, dtype=jnp.float32) -> WKV4State:
    """The state before the first token: ``aa = bb = 0``, ``pp = -1e38``."""
    zeros = jnp.zeros((batch, channels), dtype)
    return WKV4State(zeros, zeros, jnp.full((batch, channels), _NEG_INF, dtype))


def _check_wkv4(op, time_decay, time_first, k, v, seq_axis: bool) -> None:
    ndim = 3 if seq_axis else 2
    layout = "[B, T, C]" if seq_axis else "[B, C]"
    if k.ndim != ndim:
        raise ValueError(f"{op}: k must be {layout}, got shape {tuple(k.shape)}")
    _check_same(op, "shape", {"k": k, "v": v})
    c = k.shape[-1]
    if time_decay.shape != (c,) or time_first.shape != (c,):
        raise ValueError(
            f"{op}: time_decay and time_first must be [C] = ({c},), "
            f"got {tuple(time_decay.shape)} and {tuple(time_first.shape)}"
        )
    for name, x in (("time_decay", time_decay), ("time_first", time_first), ("k", k), ("v", v)):
        _check_float(name, x)
    _check_same(op, "dtype", {"k": k, "v": v})
    _check_same(op, "dtype", {"time_decay": time_decay, "time_first": time_first})


def _wkv4_output(u, state: WKV4State, k, v):
    """``y_t`` from the state before token ``t`` (with the bonus ``u`` on the token itself)."""
    aa, bb, pp = state
    ww = u + k
    p = jnp.maximum(pp, ww)
    e1, e2 = jnp.exp(pp - p), jnp.exp(ww - p)
    return (e1 * aa + e2 * v) / (e1 * bb + e2)


def _wkv4_absorb(w, state: WKV4State, k, v) -> WKV4State:
    """The state after token ``t``: the old one decayed by ``e^w``, plus ``e^k v``."""
    aa, bb, pp = state
    ww = w + pp
    p = jnp.maximum(ww, k)
    e1, e2 = jnp.exp(ww - p), jnp.exp(k - p)
    return WKV4State(e1 * aa + e2 * v, e1 * bb + e2, p)


def _wkv4_step(w, u, k, v, state: WKV4State):
    """One token in the accumulation dtype; ``w = -exp(time_decay)`` already applied."""
    return _wkv4_output(u, state, k, v), _wkv4_absorb(w, state, k, v)


def _normalised_pair(a, b):
    """``(e^(a - m), e^(b - m), m)`` with ``m = max(a, b)``, from one ``exp``: one of the two is ``e^0 = 1``."""
    z = jnp.exp(-jnp.abs(a - b))
    a_wins = a >= b
    return jnp.where(a_wins, 1.0, z), jnp.where(a_wins, z, 1.0), jnp.maximum(a, b)


def _wkv4_step_one_exp(w, u, k, v, state: WKV4State):
    """``_wkv4_step`` with two ``exp`` instead of four (``_normalised_pair``); equal up to rounding.

    ``act`` runs this (``wkv4_step`` and ``wkv4_segment``); the reference scan
    keeps upstream's operation order.
    """
    aa, bb, pp = state
    e1, e2, _ = _normalised_pair(pp, u + k)
    y = (e1 * aa + e2 * v) / (e1 * bb + e2)
    e1, e2, p = _normalised_pair(w + pp, k)
    return y, WKV4State(e1 * aa + e2 * v, e1 * bb + e2, p)


def _wkv4_merge(a: WKV4State, b: WKV4State) -> WKV4State:
    """One state holding the tokens of both ``a`` and ``b`` (each already decayed to the same position)."""
    p = jnp.maximum(a.pp, b.pp)
    e1, e2 = jnp.exp(a.pp - p), jnp.exp(b.pp - p)
    return WKV4State(e1 * a.aa + e2 * b.aa, e1 * a.bb + e2 * b.bb, p)


def _wkv4_decay(state: WKV4State, log_decay) -> WKV4State:
    """``state`` carried ``log_decay / w`` positions on with no token added (only its exponent moves)."""
    return WKV4State(state.aa, state.bb, state.pp + log_decay)


def _wkv4_params(time_decay, time_first, k):
    """The accumulation dtype, ``w = -exp(time_decay)`` and ``u`` in it."""
    acc = _acc_dtype(k.dtype, time_decay.dtype)
    return acc, -jnp.exp(time_decay.astype(acc)), time_first.astype(acc)


# Sequences this short are unrolled into straight-line code. XLA's CPU runtime runs a loop body on one
# thread, one iteration after another; unrolled, the few steps fuse into whole-batch kernels. Measured on
# the 2-core CPU (jax 0.10.2), forward + backward of wkv4 at [3200, T, 64]: 4.7x faster at T = 3 (the
# SMAX 3m agent sequence), 3.5x at T = 4, 1.1x at T = 6, and no gain from T = 8 on (slower at T = 16).
FULL_UNROLL_MAX_T = 6


def _unroll(t: int) -> int:
    """``lax.scan``'s ``unroll`` for a sequence of ``t`` steps."""
    return t if 1 <= t <= FULL_UNROLL_MAX_T else 1


def _wkv4_scan_from(w, u, k, v, state: WKV4State, step_fn=_wkv4_step):
    """``k``, ``v`` ``[B, T, C]`` continuing from ``state``: ``y`` ``[B, T, C]`` and the state after ``T``."""

    def step(state, kv):
        y, state = step_fn(w, u, kv[0], kv[1], state)
        return state, y

    state, y = jax.lax.scan(step, state, _time_major(k, v), unroll=_unroll(k.shape[1]))
    return jnp.swapaxes(y, 0, 1), state


def _check_wkv4_state(op, state, k) -> None:
    expected = (k.shape[0], k.shape[-1])
    shapes = [tuple(s.shape) for s in state] if isinstance(state, tuple) else type(state).__name__
    if not isinstance(state, WKV4State) or any(s != expected for s in shapes):
        raise ValueError(f"{op}: state must be a WKV4State of three [B, C] = {expected} arrays, got {shapes}")


def wkv4_step(time_decay, time_first, k_t, v_t, state: WKV4State):
    """One agent: ``k_t``, ``v_t`` ``[B, C]``; returns ``y_t`` ``[B, C]`` and the next state."""
    _check_wkv4("wkv4_step", time_decay, time_first, k_t, v_t, seq_axis=False)
    acc, w, u = _wkv4_params(time_decay, time_first, k_t)
    state = WKV4State(*(s.astype(acc) for s in state))
    y, state = _wkv4_step_one_exp(w, u, k_t.astype(acc), v_t.astype(acc), state)
    return y.astype(k_t.dtype), state


def wkv4_segment(time_decay, time_first, k, v, state: WKV4State):
    """``k``, ``v`` ``[B, S, C]`` continuing from ``state``; returns ``y`` ``[B, S, C]`` and the state after them.

    ``wkv4`` of a sequence equals ``wkv4_segment`` of its pieces in order, each
    starting from the state the previous one returned (the first from
    ``wkv4_init_state``).
    """
    _check_wkv4("wkv4_segment", time_decay, time_first, k, v, seq_axis=True)
    _check_wkv4_state("wkv4_segment", state, k)
    acc, w, u = _wkv4_params(time_decay, time_first, k)
    state = WKV4State(*(s.astype(acc) for s in state))
    y, state = _wkv4_scan_from(w, u, k.astype(acc), v.astype(acc), state, _wkv4_step_one_exp)
    return y.astype(k.dtype), state


def wkv4_scan(time_decay, time_first, k, v):
    """The reference: ``lax.scan`` of the one-step form over ``T``."""
    acc, w, u = _wkv4_params(time_decay, time_first, k)
    y, _ = _wkv4_scan_from(w, u, k.astype(acc), v.astype(acc), wkv4_init_state(k.shape[0], k.shape[2], acc))
    return y.astype(k.dtype)


def wkv4_chunked(time_decay, time_first, k, v, chunk: int = CHUNK):
    """``wkv4`` in ``L + T / L`` sequential steps instead of ``T`` (``L = min(chunk, T)``).

    ``T`` is cut into chunks of ``L`` positions (the last one zero-padded;
    padding only follows real positions, so it changes nothing they see).
    Three passes, all in the running-max form, so keys of any size stay exact:

    1. each chunk's own recurrence from the empty state, all chunks at once
       (``L`` steps over ``[L, B, T / L, C]``), keeping the state before each
       position;
    2. the state entering each chunk (``T / L`` steps over ``[B, C]``): the
       entering state decayed by ``L`` positions, merged with the chunk's own
       final state;
    3. elementwise at every position: the entering state decayed to it, merged
       with the chunk-local state before it, then the output.
    """
    if chunk < 1:
        raise ValueError(f"wkv4_chunked: chunk must be >= 1, got {chunk}")
    acc, w, u = _wkv4_params(time_decay, time_first, k)
    b, t, c = k.shape
    size = min(chunk, t)
    n = -(-t // size)
    pad = ((0, 0), (0, n * size - t), (0, 0))
    kc, vc = (jnp.moveaxis(jnp.pad(x.astype(acc), pad).reshape(b, n, size, c), 2, 0) for x in (k, v))

    def local(state, kv):
        return _wkv4_absorb(w, state, *kv), state

    empty = WKV4State(*(s.reshape(b, n, c) for s in wkv4_init_state(b * n, c, acc)))
    own, before_local = jax.lax.scan(local, empty, (kc, vc))

    def across(state, chunk_own):
        return _wkv4_merge(_wkv4_decay(state, size * w), chunk_own), state

    _, entering = jax.lax.scan(across, wkv4_init_state(b, c, acc), WKV4State(*(jnp.swapaxes(s, 0, 1) for s in own)))
    entering = WKV4State(*(jnp.swapaxes(s, 0, 1)[None] for s in entering))  # [1, B, n, C]
    offset = jnp.arange(size, dtype=acc)[:, None, None, None]
    before = _wkv4_merge(_wkv4_decay(entering, offset * w), before_local)
    y = _wkv4_output(u, before, kc, vc)  # [L, B, n, C]
    return jnp.moveaxis(y, 0, 2).reshape(b, n * size, c)[:, :t].astype(k.dtype)


def wkv4(time_decay, time_first, k, v, *, impl: str = "auto", interpret: bool = False):
    """RWKV-4 WKV over ``[B, T, C]`` keys and values (see the module docstring)."""
    _check_wkv4("wkv4", time_decay, time_first, k, v, seq_axis=True)
    impl = _resolve_impl("wkv4", impl, interpret, "wkv4")
    if impl == "pallas":
        return _kernel("wkv4", "wkv4_pallas")(time_decay, time_first, k, v, interpret=interpret)
    if impl == "chunked":
        return wkv4_chunked(time_decay, time_first, k, v)
    return wkv4_scan(time_decay, time_first, k, v)


# --------------------------------------------------------------------------- #
# RWKV-5 and RWKV-6                                                             #
# --------------------------------------------------------------------------- #


def wkv6_init_state(batch: int, n_head: int, head_size: int, dtype=jnp.float32) -> jax.Array:
    """The zero state ``[B, H, N, N]`` (key index, then value index)."""
    return jnp.zeros((batch, n_head, head_size, head_size), dtype)


wkv5_init_state = wkv6_init_state


def _check_matrix(op, r, k, v, w, u, w_name: str, seq_axis: bool) -> None:
    ndim = 3 if seq_axis else 2
    layout = "[B, T, C]" if seq_axis else "[B, C]"
    if r.ndim != ndim:
        raise ValueError(f"{op}: r must be {layout}, got shape {tuple(r.shape)}")
    seq = {"r": r, "k": k, "v": v}
    if w_name == "w":
        seq["w"] = w
    _check_same(op, "shape", seq)
    if u.ndim != 2 or u.shape[0] * u.shape[1] != r.shape[-1]:
        raise ValueError(f"{op}: u must be [H, N] with H * N = C = {r.shape[-1]}, got shape {tuple(u.shape)}")
    if w_name != "w" and w.shape != u.shape:
        raise ValueError(f"{op}: {w_name} must be [H, N] = {tuple(u.shape)} like u, got shape {tuple(w.shape)}")
    for name, x in (*seq.items(), (w_name, w), ("u", u)):
        _check_float(name, x)
    _check_same(op, "dtype", seq)


def _matrix_step(r, k, v, decay, u, state):
    """One token per head; ``r, k, v, decay``: ``[B, H, N]`` (``decay = exp(-exp(w))``), state ``[B, H, N, N]``.

    Written with elementwise products and sums rather than ``einsum`` so that a
    GPU does not silently run it at TF32 precision.
    """
    kv = k[..., :, None] * v[..., None, :]
    y = jnp.sum(r[..., :, None] * (u[..., :, None] * kv + state), axis=-2)
    return y, state * decay[..., :, None] + kv


def _heads(x, n_head):
    return x.reshape(*x.shape[:-1], n_head, x.shape[-1] // n_head)


def _matrix_scan(r, k, v, log_w, u, state=None):
    """``log_w``: ``[B, T, C]`` or ``[C]`` raw decay (``decay = exp(-exp(log_w))``); ``state``: the one before ``T``
    (``None``: zero). Returns ``y`` ``[B, T, C]`` and the state after ``T`` (in the accumulation dtype)."""
    acc = _acc_dtype(r.dtype, log_w.dtype, u.dtype)
    n_head, head_size = u.shape
    b, t, c = r.shape
    u = u.astype(acc)
    decay = jnp.exp(-jnp.exp(log_w.astype(acc)))
    seq = [_heads(x.astype(acc), n_head) for x in (r, k, v)]
    if decay.ndim == 1:
        static = _heads(decay, n_head)

        def step(state, x):
            y, state = _matrix_step(*x, static, u, state)
            return state, y

    else:
        seq.append(_heads(decay, n_head))

        def step(state, x):
            y, state = _matrix_step(*x[:3], x[3], u, state)
            return state, y

    state = wkv6_init_state(b, n_head, head_size, acc) if state is None else state.astype(acc)
    state, y = jax.lax.scan(step, state, _time_major(*seq))
    return jnp.swapaxes(y, 0, 1).reshape(b, t, c).astype(r.dtype), state


def _matrix_chunked(op: str, r, k, v, log_w, u, chunk: int = CHUNK):
    """``_matrix_scan`` from the zero state in ``T / L`` sequential steps instead of ``T`` (``L = min(chunk, T)``).

    Within a chunk, with ``c_t = sum_{s<t} log decay_s`` (per key channel, so
    ``c_t - c_{s+1} <= 0`` and every factor below is at most 1), the state
    before ``t`` is the entering state decayed by ``e^{c_t}`` plus
    ``sum_{s<t} e^{c_t - c_{s+1}} k_s v_s^T``. So each chunk's output is a
    causal ``L x L`` product (all chunks at once), the bonus term, and the
    entering state read through ``r_t e^{c_t}``; only the state entering each
    chunk is carried sequentially. Padding after the last position has
    ``r = k = v = 0`` and decay 1, so it changes nothing.
    """
    if chunk < 1:
        raise ValueError(f"{op}: chunk must be >= 1, got {chunk}")
    acc = _acc_dtype(r.dtype, log_w.dtype, u.dtype)
    n_head, head_size = u.shape
    b, t, c = r.shape
    size = min(chunk, t)
    n = -(-t // size)
    log_decay = -jnp.exp(log_w.astype(acc))
    if log_decay.ndim == 1:
        log_decay = jnp.broadcast_to(log_decay, r.shape)

    def chunks(x):  # [B, T, C] -> [B, n, L, H, N]
        x = jnp.pad(x.astype(acc), ((0, 0), (0, n * size - t), (0, 0)))
        return x.reshape(b, n, size, n_head, head_size)

    r, k, v, log_decay = (chunks(x) for x in (r, k, v, log_decay))
    u = u.astype(acc)
    inclusive = jnp.cumsum(log_decay, axis=2)  # c_{t+1}
    exclusive = inclusive - log_decay  # c_t
    causal = jnp.arange(size)[:, None] > jnp.arange(size)[None, :]  # [t, s]: s < t
    gap = exclusive[:, :, :, None] - inclusive[:, :, None, :]  # [B, n, t, s, H, N]
    weights = jnp.exp(jnp.where(causal[None, None, :, :, None, None], gap, -jnp.inf))
    scores = jnp.sum(r[:, :, :, None] * k[:, :, None, :] * weights, axis=-1)  # [B, n, t, s, H]
    hi = jax.lax.Precision.HIGHEST
    y = jnp.einsum("bntsh,bnshj->bnthj", scores, v, precision=hi)
    y = y + jnp.sum(r * u * k, axis=-1, keepdims=True) * v
    if n > 1:
        total = inclusive[:, :, -1]  # [B, n, H, N]: log decay over the whole chunk
        own = jnp.einsum("bnshi,bnshj->bnhij", k * jnp.exp(total[:, :, None] - inclusive), v, precision=hi)

        def across(state, x):
            chunk_total, chunk_own = x
            return jnp.exp(chunk_total)[..., None] * state + chunk_own, state

        init = wkv6_init_state(b, n_head, head_size, acc)
        _, entering = jax.lax.scan(across, init, (jnp.moveaxis(total, 1, 0), jnp.moveaxis(own, 1, 0)))
        entering = jnp.moveaxis(entering, 0, 1)  # [B, n, H, N, N]: the state before each chunk
        y = y + jnp.einsum("bnthi,bnhij->bnthj", r * jnp.exp(exclusive), entering, precision=hi)
    return y.reshape(b, n * size, c)[:, :t]


def _matrix_one_step(r_t, k_t, v_t, log_w, u, state):
    """``log_w``: ``[B, C]`` (v6) or ``[C]`` (v5) raw decay."""
    acc = _acc_dtype(r_t.dtype, log_w.dtype, u.dtype)
    n_head = u.shape[0]
    decay = _heads(jnp.exp(-jnp.exp(log_w.astype(acc))), n_head)
    r, k, v = (_heads(x.astype(acc), n_head) for x in (r_t, k_t, v_t))
    y, state = _matrix_step(r, k, v, decay, u.astype(acc), state.astype(acc))
    return y.reshape(r_t.shape).astype(r_t.dtype), state


def _check_state(op, state, batch, u) -> None:
    expected = (batch, u.shape[0], u.shape[1], u.shape[1])
    if tuple(state.shape) != expected:
        raise ValueError(f"{op}: state must be [B, H, N, N] = {expected}, got shape {tuple(state.shape)}")


def wkv6_scan(r, k, v, w, u):
    """The reference: ``lax.scan`` over ``T`` of the one-step form."""
    return _matrix_scan(r, k, v, w, u)[0]


def wkv6_chunked(r, k, v, w, u, chunk: int = CHUNK):
    """``wkv6`` by chunks of ``chunk`` positions (``_matrix_chunked``); equal to ``wkv6_scan`` up to rounding."""
    return _matrix_chunked("wkv6_chunked", r, k, v, w, u, chunk).astype(r.dtype)


def wkv6_segment(r, k, v, w, u, state):
    """``[B, S, C]`` positions continuing from ``state`` ``[B, H, N, N]``; returns ``y`` and the state after them."""
    _check_matrix("wkv6_segment", r, k, v, w, u, "w", seq_axis=True)
    _check_state("wkv6_segment", state, r.shape[0], u)
    return _matrix_scan(r, k, v, w, u, state)


def wkv6_step(r_t, k_t, v_t, w_t, u, state):
    """One agent: ``r_t, k_t, v_t, w_t`` ``[B, C]``, state ``[B, H, N, N]`` -> ``y_t`` ``[B, C]``, state."""
    _check_matrix("wkv6_step", r_t, k_t, v_t, w_t, u, "w", seq_axis=False)
    _check_state("wkv6_step", state, r_t.shape[0], u)
    return _matrix_one_step(r_t, k_t, v_t, w_t, u, state)


def wkv6(r, k, v, w, u, *, impl: str = "auto", interpret: bool = False):
    """RWKV-6 WKV with data-dependent decay ``w`` ``[B, T, C]`` and bonus ``u`` ``[H, N]``."""
    _check_matrix("wkv6", r, k, v, w, u, "w", seq_axis=True)
    impl = _resolve_impl("wkv6", impl, interpret, "wkv6")
    if impl == "pallas":
        return _kernel("wkv6", "wkv6_pallas")(r, k, v, w, u, interpret=interpret)
    if impl == "chunked":
        return wkv6_chunked(r, k, v, w, u)
    return wkv6_scan(r, k, v, w, u)


def wkv5_scan(r, k, v, time_decay, u):
    return _matrix_scan(r, k, v, time_decay.reshape(-1), u)[0]


def wkv5_chunked(r, k, v, time_decay, u, chunk: int = CHUNK):
    """``wkv5`` by chunks (``_matrix_chunked`` with the static decay)."""
    return _matrix_chunked("wkv5_chunked", r, k, v, time_decay.reshape(-1), u, chunk).astype(r.dtype)


def wkv5_segment(r, k, v, time_decay, u, state):
    """``wkv6_segment`` with the static decay ``time_decay`` ``[H, N]``."""
    _check_matrix("wkv5_segment", r, k, v, time_decay, u, "time_decay", seq_axis=True)
    _check_state("wkv5_segment", state, r.shape[0], u)
    return _matrix_scan(r, k, v, time_decay.reshape(-1), u, state)


def wkv5_step(r_t, k_t, v_t, time_decay, u, state):
    """One agent of ``wkv5``: like ``wkv6_step`` with the static decay ``time_decay`` ``[H, N]``."""
    _check_matrix("wkv5_step", r_t, k_t, v_t, time_decay, u, "time_decay", seq_axis=False)
    _check_state("wkv5_step", state, r_t.shape[0], u)
    return _matrix_one_step(r_t, k_t, v_t, time_decay.reshape(-1), u, state)


def wkv5(r, k, v, time_decay, u, *, impl: str = "auto", interpret: bool = False):
    """RWKV-5 WKV: static per-channel decay ``exp(-exp(time_decay))``, ``time_decay`` and ``u`` ``[H, N]``.

    The Pallas path is ``pallas_kernels.wkv6.wkv5_pallas``: the RWKV-6 kernel with the decay broadcast over time.
    """
    _check_matrix("wkv5", r, k, v, time_decay, u, "time_decay", seq_axis=True)
    impl = _resolve_impl("wkv5", impl, interpret, "wkv6")
    if impl == "pallas":
        return _kernel("wkv6", "wkv5_pallas")(r, k, v, time_decay, u, interpret=interpret)
    if impl == "chunked":
        return wkv5_chunked(r, k, v, time_decay, u)
    return wkv5_scan(r, k, v, time_decay, u)
