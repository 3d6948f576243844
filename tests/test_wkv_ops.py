"""WKV operators: upstream kernel parity, float64 O(T^2) references, step == segment == parallel, the chunked
form against the scan (values and gradients), bf16, dispatch, errors."""

import functools
import pathlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jax_mat.ops import wkv

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "marwkv_reference"
# LLVM -O0: halves XLA's CPU compile time, which dominates these tests.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _load(name):
    path = FIXTURES / name
    assert path.exists(), f"MARWKV fixtures not found under {FIXTURES} (CI keeps ../shared beside the clone)"
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _close(got, ref, rtol=1e-4):
    """Elementwise within ``rtol`` of the value or of the largest reference magnitude (README: ~1e-4)."""
    ref = np.asarray(ref, np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, rtol=rtol, atol=rtol * np.abs(ref).max())


# --------------------------------------------------------------------------- #
# Float64 references, written as the O(T^2) sums (not the recurrences)          #
# --------------------------------------------------------------------------- #


def naive_wkv4(time_decay, time_first, k, v):
    """``y_t = sum_{s<=t} e^{L[t, s]} v_s / sum_{s<=t} e^{L[t, s]}`` with ``L[t, s] = (t-1-s) w + k_s``, ``u + k_t``."""
    t = k.shape[1]
    w = -jnp.exp(time_decay)
    ts, ss = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
    logits = ((ts - 1 - ss)[..., None] * w + k[:, None, :, :])  # [B, t, s, C]
    logits = jnp.where((ss == ts)[..., None], time_first + k[:, :, None, :], logits)
    logits = jnp.where((ss > ts)[..., None], -jnp.inf, logits)
    weights = jax.nn.softmax(logits, axis=2)
    return jnp.einsum("btsc,bsc->btc", weights, v)


def naive_wkv6(r, k, v, w, u):
    """``y_t[i] = sum_j r_t[j] (u[j] k_t[j] v_t[i] + sum_{s<t} prod_{s<tau<t} d_tau[j] k_s[j] v_s[i])``."""
    b, t, c = r.shape
    h, n = u.shape
    heads = lambda x: x.reshape(b, t, h, n)
    r, k, v, log_decay = heads(r), heads(k), heads(v), heads(-jnp.exp(w))
    cum = jnp.cumsum(log_decay, axis=1)  # sum_{tau<=t}
    ts, ss = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
    # sum_{s<tau<t} log d_tau = cum[t-1] - cum[s] for s < t
    prev = jnp.concatenate([jnp.zeros_like(cum[:, :1]), cum[:, :-1]], axis=1)
    gap = prev[:, :, None] - cum[:, None, :]  # [B, t, s, H, N]
    decay = jnp.where((ss < ts)[None, :, :, None, None], jnp.exp(jnp.minimum(gap, 0.0)), 0.0)
    past = jnp.einsum("bthj,btshj,bshj,bshi->bthi", r, decay, k, v)
    bonus = jnp.einsum("bthj,hj,bthj->bth", r, u, k)[..., None] * v
    return (past + bonus).reshape(b, t, c)


def naive_wkv5(r, k, v, time_decay, u):
    return naive_wkv6(r, k, v, jnp.broadcast_to(time_decay.reshape(-1), r.shape), u)


def _v4_inputs(seed, b, t, c, k_scale, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(-2.0, 2.0, (c,)).astype(dtype),
        rng.normal(size=(c,)).astype(dtype),
        rng.uniform(-k_scale, k_scale, (b, t, c)).astype(dtype),
        rng.normal(size=(b, t, c)).astype(dtype),
    )


def _v6_inputs(seed, b, t, h, n, dtype=np.float32):
    rng = np.random.default_rng(seed)
    r, k, v = (rng.normal(size=(b, t, h * n)).astype(dtype) for _ in range(3))
    w = rng.uniform(-6.0, 2.0, (b, t, h * n)).astype(dtype)
    return r, k, v, w, rng.normal(size=(h, n)).astype(dtype)


def _v5_inputs(seed, b, t, h, n, dtype=np.float32):
    r, k, v, w, u = _v6_inputs(seed, b, t, h, n, dtype)
    return r, k, v, w[0, 0].reshape(h, n), u


def _value_and_grads(fn, g):
    """jit of ``(fn(*a), grad of sum(fn(*a) * g) w.r.t. every argument)``."""

    def run(*args):
        loss = lambda *a: jnp.sum(fn(*a) * g)
        return fn(*args), jax.grad(loss, argnums=tuple(range(len(args))))(*args)

    return jit(run)


# --------------------------------------------------------------------------- #
# Upstream kernel parity (float64 references of the CUDA kernels)              #
# --------------------------------------------------------------------------- #


def test_wkv4_matches_upstream_kernel_and_its_gradients():
    d = _load("wkv4_op.npz")
    y, grads = _value_and_grads(lambda *a: wkv.wkv4(*a, impl="scan"), d["g"])(d["w"], d["u"], d["k"], d["v"])
    _close(y, d["out/y"])
    for name, g in zip("wukv", grads):
        _close(g, d[f"grad/{name}"])


@pytest.mark.parametrize("impl", ["scan", "chunked"])
def test_wkv6_matches_upstream_kernel_and_its_gradients(impl):
    d = _load("wkv6_op.npz")
    y, grads = _value_and_grads(lambda *a: wkv.wkv6(*a, impl=impl), d["g"])(*(d[n] for n in "rkvwu"))
    _close(y, d["out/y"])
    for name, g in zip("rkvwu", grads):
        _close(g, d[f"grad/{name}"])
    # w_0 and w_{T-1} never decay anything: exactly zero in the scan; in the chunked form w_0 enters two
    # cumulative sums that cancel, so only up to rounding there.
    edge, scale = np.abs(grads[3][:, [0, -1]]), float(np.abs(grads[3]).max())
    assert edge.max() == 0.0 if impl == "scan" else edge.max() <= 1e-5 * scale


# --------------------------------------------------------------------------- #
# Float64 O(T^2) references                                                     #
# --------------------------------------------------------------------------- #

CASES = {
    "v4": (wkv.wkv4, naive_wkv4, lambda seed, t: _v4_inputs(seed, 2, t, 8, k_scale=30.0)),
    "v5": (wkv.wkv5, naive_wkv5, lambda seed, t: _v5_inputs(seed, 2, t, 2, 4)),
    "v6": (wkv.wkv6, naive_wkv6, lambda seed, t: _v6_inputs(seed, 2, t, 2, 4)),
}
IMPL_CASES = [(version, impl) for version in sorted(CASES) for impl in ("scan", "chunked")]


@pytest.mark.parametrize("version,impl", IMPL_CASES)
def test_matches_float64_quadratic_reference(version, impl):
    op, naive, make = CASES[version]
    inputs = make(27, 27)
    g = np.random.default_rng(99).normal(size=inputs[2].shape)
    scan = lambda *a: op(*a, impl=impl)
    with jax.enable_x64(True):
        inputs64 = [np.asarray(x, np.float64) for x in inputs]
        ref_y, ref_grads = _value_and_grads(naive, g)(*inputs64)
        # The op itself in float64: the recurrence is exact, only rounding separates it from the sums.
        y64 = jit(scan)(*inputs64)
        assert y64.dtype == jnp.float64
        np.testing.assert_allclose(y64, ref_y, rtol=1e-9, atol=1e-9 * float(jnp.abs(ref_y).max()))
    y, grads = _value_and_grads(scan, g.astype(np.float32))(*inputs)
    assert y.dtype == jnp.float32
    _close(y, ref_y)
    for got, ref in zip(grads, ref_grads):
        _close(got, ref)


@pytest.mark.parametrize("impl", ["scan", "chunked"])
def test_wkv4_survives_keys_far_beyond_exp_range(impl):
    """k = +-300 overflows exp() in float32; the running max keeps the result finite and exact."""
    inputs = _v4_inputs(3, 2, 9, 4, k_scale=300.0)
    y = jit(lambda *a: wkv.wkv4_chunked(*a, chunk=4) if impl == "chunked" else wkv.wkv4_scan(*a))(*inputs)
    assert np.all(np.isfinite(y))
    with jax.enable_x64(True):
        ref = jit(naive_wkv4)(*(np.asarray(x, np.float64) for x in inputs))
    _close(y, ref)


# --------------------------------------------------------------------------- #
# The chunked form against the scan                                            #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "t,chunk",
    [(1, 16), (5, 16), (16, 16), (17, 16), (27, 16), (27, 5), (64, 1), (1000, 16), (1000, 32)],
)
def test_wkv4_chunked_equals_scan_with_its_gradients(t, chunk):
    """Lengths below, at, just over, and not a multiple of the chunk; chunks of one position; long sequences."""
    inputs = _v4_inputs(t, 2, t, 4, k_scale=30.0)
    g = np.random.default_rng(t).normal(size=inputs[2].shape).astype(np.float32)
    y_scan, grads_scan = _value_and_grads(wkv.wkv4_scan, g)(*inputs)
    y, grads = _value_and_grads(lambda *a: wkv.wkv4_chunked(*a, chunk=chunk), g)(*inputs)
    assert y.shape == y_scan.shape == inputs[2].shape and y.dtype == jnp.float32
    tol = 1e-5 if t < 1000 else 1e-4  # float32 rounding grows with the length in both forms
    _close(y, y_scan, rtol=tol)
    for got, ref in zip(grads, grads_scan):
        assert np.all(np.isfinite(got))
        _close(got, ref, rtol=tol)


def test_wkv4_chunked_gradients_pass_numerical_checks_in_float64():
    with jax.enable_x64(True):
        td, tf, k, v = (np.asarray(x, np.float64) for x in _v4_inputs(11, 2, 11, 3, k_scale=30.0))
        check_grads(lambda *a: wkv.wkv4_chunked(*a, chunk=4), (td, tf, k, v), order=1, modes=["rev"],
                    atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("version", ["v5", "v6"])
@pytest.mark.parametrize("t,chunk", [(1, 16), (3, 16), (16, 16), (17, 16), (27, 5), (64, 1), (300, 16)])
def test_matrix_chunked_equals_scan_with_its_gradients(version, t, chunk):
    """v5/v6 by chunks: one chunk (the SMAX lengths), several, a ragged last one, chunks of one position."""
    make, scan, chunked = {
        "v5": (_v5_inputs, wkv.wkv5_scan, wkv.wkv5_chunked),
        "v6": (_v6_inputs, wkv.wkv6_scan, wkv.wkv6_chunked),
    }[version]
    inputs = make(t, 2, t, 2, 4)
    g = np.random.default_rng(t).normal(size=inputs[0].shape).astype(np.float32)
    y_scan, grads_scan = _value_and_grads(scan, g)(*inputs)
    y, grads = _value_and_grads(lambda *a: chunked(*a, chunk=chunk), g)(*inputs)
    assert y.shape == y_scan.shape and y.dtype == jnp.float32
    _close(y, y_scan)
    for got, ref in zip(grads, grads_scan):
        assert np.all(np.isfinite(got))
        _close(got, ref)


def test_wkv6_chunked_gradients_pass_numerical_checks_in_float64():
    with jax.enable_x64(True):
        inputs = tuple(np.asarray(x, np.float64) for x in _v6_inputs(13, 2, 11, 2, 3))
        check_grads(lambda *a: wkv.wkv6_chunked(*a, chunk=4), inputs, order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_auto_runs_the_chunked_matrix_forms_off_the_gpu():
    r, k, v, w, u = _v6_inputs(14, 2, 9, 2, 4)
    if jax.default_backend() == "gpu":
        pytest.skip("on a GPU impl='auto' is the Pallas kernel (tests/test_pallas_wkv.py)")
    np.testing.assert_array_equal(jit(lambda *a: wkv.wkv6(*a, impl="auto"))(r, k, v, w, u),
                                  jit(wkv.wkv6_chunked)(r, k, v, w, u))
    td = w[0, 0].reshape(u.shape)
    np.testing.assert_array_equal(jit(lambda *a: wkv.wkv5(*a, impl="auto"))(r, k, v, td, u),
                                  jit(wkv.wkv5_chunked)(r, k, v, td, u))


def test_wkv4_impl_chunked_dispatches_and_keeps_dtypes():
    td, tf, k, v = _v4_inputs(12, 2, 27, 4, k_scale=3.0)
    chunked = jit(lambda *a: wkv.wkv4(*a, impl="chunked"))
    np.testing.assert_allclose(chunked(td, tf, k, v), jit(wkv.wkv4_chunked)(td, tf, k, v), rtol=0, atol=0)
    y16 = chunked(td, tf, jnp.asarray(k, jnp.bfloat16), jnp.asarray(v, jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    with jax.enable_x64(True):
        y64 = jit(lambda *a: wkv.wkv4(*a, impl="chunked"))(*(np.asarray(x, np.float64) for x in (td, tf, k, v)))
        assert y64.dtype == jnp.float64


# --------------------------------------------------------------------------- #
# Step form == segment form == parallel form; bf16                              #
# --------------------------------------------------------------------------- #


def _unrolled(step, init, per_step):
    """Python loop of a jitted one-step function over axis 1 of ``per_step`` arrays."""
    step, state, ys = jit(step), init, []
    for i in range(per_step[0].shape[1]):
        y, state = step(*(x[:, i] for x in per_step), state)
        ys.append(y)
    return np.stack(ys, 1), state


def test_step_forms_equal_parallel_forms():
    td, tf, k, v = _v4_inputs(4, 3, 6, 8, k_scale=30.0)
    ys, _ = _unrolled(lambda k, v, s: wkv.wkv4_step(td, tf, k, v, s), wkv.wkv4_init_state(3, 8), (k, v))
    np.testing.assert_allclose(ys, jit(wkv.wkv4_scan)(td, tf, k, v), rtol=1e-6, atol=1e-6)

    r, k, v, w, u = _v6_inputs(5, 3, 6, 2, 4)
    ys, state = _unrolled(lambda *a: wkv.wkv6_step(*a[:4], u, a[4]), wkv.wkv6_init_state(3, 2, 4), (r, k, v, w))
    np.testing.assert_allclose(ys, jit(wkv.wkv6_scan)(r, k, v, w, u), rtol=1e-6, atol=1e-6)
    assert state.shape == (3, 2, 4, 4)
    static = w[0, 0].reshape(2, 4)
    ys, _ = _unrolled(lambda *a: wkv.wkv5_step(*a[:3], static, u, a[3]), wkv.wkv5_init_state(3, 2, 4), (r, k, v))
    np.testing.assert_allclose(ys, jit(wkv.wkv5_scan)(r, k, v, static, u), rtol=1e-6, atol=1e-6)


def test_segments_chained_equal_the_whole_sequence():
    """Pieces of 4, 1 and 6 positions, each from the state the previous one returned, give the parallel result."""
    cuts = (0, 4, 5, 11)
    td, tf, k, v = _v4_inputs(13, 3, 11, 8, k_scale=30.0)
    state, ys = wkv.wkv4_init_state(3, 8), []
    for a, b in zip(cuts[:-1], cuts[1:]):
        y, state = jit(wkv.wkv4_segment)(td, tf, k[:, a:b], v[:, a:b], state)
        ys.append(y)
    np.testing.assert_allclose(np.concatenate(ys, 1), jit(wkv.wkv4_scan)(td, tf, k, v), rtol=1e-6, atol=1e-6)

    r, k, v, w, u = _v6_inputs(14, 3, 11, 2, 4)
    static = w[0, 0].reshape(2, 4)
    for segment, scan, decay in ((wkv.wkv6_segment, wkv.wkv6_scan, w), (wkv.wkv5_segment, wkv.wkv5_scan, static)):
        state, ys = wkv.wkv6_init_state(3, 2, 4), []
        for a, b in zip(cuts[:-1], cuts[1:]):
            d = decay[:, a:b] if decay.ndim == 3 else decay
            y, state = jit(segment)(r[:, a:b], k[:, a:b], v[:, a:b], d, u, state)
            ys.append(y)
        assert state.shape == (3, 2, 4, 4)
        np.testing.assert_allclose(np.concatenate(ys, 1), jit(scan)(r, k, v, decay, u), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version,impl", IMPL_CASES)
def test_bfloat16_inputs_accumulate_in_float32(version, impl):
    op, _, make = CASES[version]
    inputs = make(6, 27)
    if version == "v4":  # keep bf16 rounding of k (~2^-8 relative) from dominating the comparison
        inputs = (*inputs[:2], inputs[2] / 10.0, inputs[3])
    scan = jit(lambda *a: op(*a, impl=impl))
    y32 = scan(*inputs)
    y16 = scan(*(jnp.asarray(x, jnp.bfloat16) for x in inputs))
    assert y16.dtype == jnp.bfloat16
    scale = float(jnp.abs(y32).max())
    assert float(jnp.abs(y16.astype(jnp.float32) - y32).max()) < 0.05 * scale


# --------------------------------------------------------------------------- #
# Dispatch and errors                                                          #
# --------------------------------------------------------------------------- #


def test_pallas_dispatch_calls_the_kernels_with_their_signatures(monkeypatch):
    calls = []
    fake4 = types.SimpleNamespace(wkv4_pallas=lambda td, tf, k, v, interpret: calls.append(("wkv4", interpret)) or k)
    fake6 = types.SimpleNamespace(
        wkv6_pallas=lambda r, k, v, w, u, interpret: calls.append(("wkv6", w.shape)) or r,
        wkv5_pallas=lambda r, k, v, time_decay, u, interpret: calls.append(("wkv5", time_decay.shape)) or r,
    )
    monkeypatch.setitem(sys.modules, "pallas_kernels.wkv4", fake4)
    monkeypatch.setitem(sys.modules, "pallas_kernels.wkv6", fake6)
    td, tf, k, v = _v4_inputs(7, 1, 3, 4, k_scale=1.0)
    r, k6, v6, w, u = _v6_inputs(8, 1, 3, 1, 4)
    assert wkv.wkv4(td, tf, k, v, impl="pallas", interpret=True) is k
    assert wkv.wkv6(r, k6, v6, w, u, impl="pallas", interpret=True) is r
    assert wkv.wkv5(r, k6, v6, w[0, 0].reshape(1, 4), u, impl="pallas", interpret=True) is r
    assert calls == [("wkv4", True), ("wkv6", (1, 3, 4)), ("wkv5", (1, 4))]
    if jax.default_backend() != "gpu":
        wkv.wkv4(td, tf, k, v, impl="auto")  # the scan: no kernel call on a CPU
        assert len(calls) == 3


@pytest.fixture
def fresh_auto():
    """``impl="auto"``'s choices and kernel checks are cached per process: start and end each test without them."""
    wkv._auto_on_gpu.cache_clear()
    wkv.kernel_failure.cache_clear()
    yield
    wkv._auto_on_gpu.cache_clear()
    wkv.kernel_failure.cache_clear()


def test_auto_on_a_gpu_falls_back_when_the_kernel_fails_and_says_so(monkeypatch, caplog, fresh_auto):
    calls = []
    broken = types.SimpleNamespace(wkv4_pallas=lambda *a, interpret: calls.append("kernel") or 1 / 0)
    monkeypatch.setitem(sys.modules, "pallas_kernels.wkv4", broken)
    monkeypatch.setattr(wkv, "_on_gpu", lambda: True)
    td, tf, k, v = _v4_inputs(7, 1, 3, 4, k_scale=1.0)
    with caplog.at_level("WARNING", logger="jax_mat.ops.wkv"):
        for _ in range(2):  # the second call neither checks nor logs again
            np.testing.assert_array_equal(jit(lambda *a: wkv.wkv4(*a, impl="auto"))(td, tf, k, v),
                                          jit(wkv.wkv4_scan)(td, tf, k, v))
    assert calls == ["kernel"]
    [line] = caplog.messages
    assert "WKV impl=auto for wkv4" in line and "impl='scan'" in line and "ZeroDivisionError" in line


def test_auto_on_a_gpu_refuses_a_kernel_with_wrong_numbers(monkeypatch, caplog, fresh_auto):
    off = types.SimpleNamespace(wkv6_pallas=lambda r, k, v, w, u, interpret: r * 1.01)
    monkeypatch.setitem(sys.modules, "pallas_kernels.wkv6", off)
    monkeypatch.setattr(wkv, "_on_gpu", lambda: True)
    with caplog.at_level("WARNING", logger="jax_mat.ops.wkv"):
        assert wkv._resolve_impl("wkv6", "auto", False, "wkv6") == wkv.AUTO_OFF_GPU["wkv6"]
    assert "relative difference" in caplog.text


def test_kernel_check_passes_the_real_kernels_in_interpret_mode_even_while_tracing(fresh_auto):
    seen = []

    @jax.jit
    def traced(x):  # auto is resolved while a network is traced: the check must run eagerly there too
        seen.extend(wkv.kernel_failure(m, interpret=True) for m in ("wkv4", "wkv6"))
        return x

    traced(jnp.zeros(1))
    assert seen == [None, None]
    if jax.default_backend() == "cpu":
        assert "interpret mode" in wkv.kernel_failure("wkv4")  # natively the CPU refuses the kernel


def test_errors_name_what_is_allowed(monkeypatch):
    td, tf, k, v = _v4_inputs(9, 1, 3, 4, k_scale=1.0)
    r, k6, v6, w, u = _v6_inputs(10, 1, 3, 2, 2)
    with pytest.raises(ValueError, match="unknown WKV impl 'triton'; allowed: 'scan', 'chunked', 'pallas', 'auto'"):
        wkv.wkv4(td, tf, k, v, impl="triton")
    with pytest.raises(ValueError, match="wkv6_chunked: chunk must be >= 1, got 0"):
        wkv.wkv6_chunked(r, k6, v6, w, u, chunk=0)
    with pytest.raises(ValueError, match="wkv5_chunked: chunk must be >= 1, got 0"):
        wkv.wkv5_chunked(r, k6, v6, w[0, 0].reshape(u.shape), u, chunk=0)
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        wkv.wkv4_chunked(td, tf, k, v, chunk=0)
    with pytest.raises(ValueError, match=r"wkv4_segment: state must be a WKV4State of three \[B, C\] = \(1, 4\)"):
        wkv.wkv4_segment(td, tf, k, v, wkv.wkv4_init_state(2, 4))
    with pytest.raises(ValueError, match=r"wkv6_segment: state must be \[B, H, N, N\]"):
        wkv.wkv6_segment(r, k6, v6, w, u, wkv.wkv6_init_state(1, 1, 4))
    if jax.default_backend() != "gpu":
        with pytest.raises(ValueError, match="needs a GPU.*interpret=True"):
            wkv.wkv6(r, k6, v6, w, u, impl="pallas")
    monkeypatch.setitem(sys.modules, "pallas_kernels.wkv4", None)  # the kernel module is not there
    with pytest.raises(ImportError, match="pallas_kernels/wkv4.py"):
        wkv.wkv4(td, tf, k, v, impl="pallas", interpret=True)
    with pytest.raises(ValueError, match="k, v must have the same shape"):
        wkv.wkv4(td, tf, k, v[:, :2])
    with pytest.raises(ValueError, match=r"time_decay and time_first must be \[C\] = \(4,\)"):
        wkv.wkv4(td[:3], tf, k, v)
    with pytest.raises(ValueError, match="k, v must have the same dtype"):
        wkv.wkv4(td, tf, k, v.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="k must be a floating-point array"):
        wkv.wkv4(td, tf, k.astype(np.int32), v.astype(np.int32))
    with pytest.raises(ValueError, match=r"u must be \[H, N\] with H \* N = C = 4"):
        wkv.wkv6(r, k6, v6, w, u[:1])
    with pytest.raises(ValueError, match="r, k, v, w must have the same dtype"):
        wkv.wkv6(r, k6, v6, w.astype(jnp.bfloat16), u)
    with pytest.raises(ValueError, match=r"time_decay must be \[H, N\] = \(2, 2\)"):
        wkv.wkv5(r, k6, v6, u.reshape(-1), u)
    with pytest.raises(ValueError, match=r"state must be \[B, H, N, N\]"):
        wkv.wkv6_step(r[:, 0], k6[:, 0], v6[:, 0], w[:, 0], u, wkv.wkv6_init_state(1, 1, 4))
