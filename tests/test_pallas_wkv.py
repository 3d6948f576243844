"""Pallas WKV kernels (v4, v5, v6): forward and every gradient against a float64 reference written here and
against upstream's operator fixtures; GPU lowering (Triton) for forward and backward; clear errors on bad input.

The kernels run natively where the default backend is a GPU and in Pallas interpret mode elsewhere;
``JAX_MAT_PALLAS_INTERPRET=1`` forces interpret mode on a GPU too (``=0`` asks for native kernels anywhere, which
fails off a GPU). ``scripts/gpu_suite.py`` runs this file natively on the GPU machine.
"""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from pallas_kernels.wkv4 import wkv4_pallas
from pallas_kernels.wkv6 import wkv5_pallas, wkv6_pallas

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "marwkv_reference"

TOL = dict(rtol=1e-4, atol=1e-4)  # float32 kernels vs float64 truth, relative to each array's scale
ON_GPU = jax.default_backend() == "gpu"
INTERPRET = os.environ.get("JAX_MAT_PALLAS_INTERPRET", "0" if ON_GPU else "1") != "0"
# The H100 that lowering for ``cuda`` targets from a machine without a GPU (jax >= 0.11 asks for a device kind).
ABSTRACT_GPU = "NVIDIA H100 80GB HBM3"


def test_native_mode_needs_a_gpu():
    """``JAX_MAT_PALLAS_INTERPRET=0`` (what the GPU suite sets) fails here, not in every kernel test, off a GPU."""
    assert INTERPRET or ON_GPU, f"JAX_MAT_PALLAS_INTERPRET=0 needs a GPU; the default backend is {jax.default_backend()}"


# ----------------------------------------------------------------------------------------------------------------
# float64 references (used inside jax.enable_x64)
# ----------------------------------------------------------------------------------------------------------------


def _wkv4_ref(time_decay, time_first, k, v):
    """Closed form: y_t = softmax over i <= t of logits (t-1-i) w + k_i (i < t), u + k_t (i = t), applied to v."""
    T = k.shape[1]
    w = -jnp.exp(time_decay)
    t = jnp.arange(T)[:, None]
    i = jnp.arange(T)[None, :]
    # logits[b, t, i, c]
    past = ((t - 1 - i)[None, :, :, None] * w) + k[:, None, :, :]
    diag = (time_first + k)[:, :, None, :]
    logits = jnp.where((i == t)[None, :, :, None], diag, past)
    logits = jnp.where((i <= t)[None, :, :, None], logits, -jnp.inf)
    return jnp.einsum("btic,bic->btc", jax.nn.softmax(logits, axis=2), v)


def _wkv6_ref(r, k, v, w, u):
    B, T, C = r.shape
    H, N = u.shape
    rs, ks, vs, ws = (x.reshape(B, T, H, N).transpose(1, 0, 2, 3) for x in (r, k, v, w))

    def step(s, x):  # s [B, H, N(j), N(i)]
        rt, kt, vt, wt = x
        kv = kt[..., :, None] * vt[..., None, :]
        y = jnp.einsum("bhj,bhji->bhi", rt, u[None, :, :, None] * kv + s)
        return s * jnp.exp(-jnp.exp(wt))[..., None] + kv, y

    _, ys = lax.scan(step, jnp.zeros((B, H, N, N), r.dtype), (rs, ks, vs, ws))
    return ys.transpose(1, 0, 2, 3).reshape(B, T, C)


def _ref_and_grads(ref, args, g):
    """float64 output and vjp of ref at the given inputs and cotangent (one jitted program)."""
    with jax.enable_x64(True):
        args64 = [jnp.asarray(np.asarray(a, np.float64)) for a in args]

        def run(args, g):
            y, vjp = jax.vjp(ref, *args)
            return y, vjp(g)

        y, grads = jax.jit(run)(args64, jnp.asarray(np.asarray(g, np.float64)))
        return np.asarray(y), [np.asarray(x) for x in grads]


def _vjp_jit(fn, args, g):
    """Output and vjp of fn, as one jitted program (an eager pallas_call re-traces on every call)."""

    def run(args, g):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(g.astype(y.dtype))

    return jax.jit(run)(list(args), g)


def _pallas_and_grads(fn, args, g):
    return _vjp_jit(lambda *a: fn(*a, interpret=INTERPRET), args, g)


def _close(name, actual, expected, rtol=TOL["rtol"], atol=TOL["atol"]):
    actual = np.asarray(actual, np.float64)
    scale = max(np.abs(expected).max(), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=name)


def _v4_inputs(B, T, C, seed=0, k_scale=1.0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    td = rng.normal(size=C) - 1.0
    tf = rng.normal(size=C)
    k = rng.uniform(-k_scale, k_scale, size=(B, T, C))
    v = rng.normal(size=(B, T, C))
    g = rng.normal(size=(B, T, C))
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return [f32(td), f32(tf), jnp.asarray(k, dtype), jnp.asarray(v, dtype)], f32(g)


def _v6_inputs(B, T, H, N, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    C = H * N
    r, k, v = (jnp.asarray(rng.normal(size=(B, T, C)), dtype) for _ in range(3))
    w = jnp.asarray(rng.uniform(-3.0, 1.0, size=(B, T, C)), jnp.float32)
    u = jnp.asarray(rng.normal(size=(H, N)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(B, T, C)), jnp.float32)
    return [r, k, v, w, u], g


def _check_against_ref(fn, ref, args, g, names, rtol=TOL["rtol"], atol=TOL["atol"]):
    y, grads = _pallas_and_grads(fn, args, g)
    y_ref, grads_ref = _ref_and_grads(ref, args, g)
    _close("y", y, y_ref, rtol, atol)
    for name, a, b, x in zip(names, grads, grads_ref, args):
        assert a.shape == x.shape and a.dtype == x.dtype, (name, a.shape, a.dtype, x.shape, x.dtype)
        _close(f"grad {name}", a, b, rtol, atol)


# ----------------------------------------------------------------------------------------------------------------
# v4
# ----------------------------------------------------------------------------------------------------------------


def test_wkv4_matches_upstream_fixture():
    d = np.load(FIXTURES / "wkv4_op.npz")
    args = [jnp.asarray(d[n]) for n in ("w", "u", "k", "v")]
    assert float(np.abs(d["k"]).max()) > 25.0  # the fixture exercises the running-max trick
    y, grads = _pallas_and_grads(wkv4_pallas, args, jnp.asarray(d["g"]))
    _close("y", y, d["out/y"])
    for name, grad in zip(("w", "u", "k", "v"), grads):
        _close(f"grad {name}", grad, d[f"grad/{name}"])


@pytest.mark.parametrize(
    "B,T,C,k_scale",
    [(2, 27, 24, 30.0), (1, 1000, 4, 3.0)],
    ids=["odd_T_padded_C_keys_pm30", "long_T1000"],
)
def test_wkv4_matches_float64_reference(B, T, C, k_scale):
    args, g = _v4_inputs(B, T, C, k_scale=k_scale)
    _check_against_ref(wkv4_pallas, _wkv4_ref, args, g, ("time_decay", "time_first", "k", "v"))


def test_wkv4_explicit_block_c_and_jit():
    args, g = _v4_inputs(2, 9, 32, seed=3)
    f = jax.jit(lambda *a: wkv4_pallas(*a, interpret=INTERPRET, block_c=8))
    y_ref, _ = _ref_and_grads(_wkv4_ref, args, g)
    _close("y", f(*args), y_ref)


def _bf16_pair(args, n_bf16):
    """(inputs rounded to bf16 but kept float32, the same inputs as bf16) for the first n_bf16 arrays."""
    bf = [jnp.asarray(np.asarray(x).astype(jnp.bfloat16)) for x in args[:n_bf16]]
    return [jnp.asarray(np.asarray(x).astype(np.float32)) for x in bf] + args[n_bf16:], bf + args[n_bf16:]


def test_wkv4_bfloat16_close_to_float32():
    args, g = _v4_inputs(2, 16, 16, seed=1, k_scale=5.0)
    rounded, args_bf = _bf16_pair(args[::-1], 2)  # k, v in bf16; time_decay, time_first stay float32
    y32, g32 = _pallas_and_grads(wkv4_pallas, rounded[::-1], g)
    ybf, gbf = _pallas_and_grads(wkv4_pallas, args_bf[::-1], g)
    assert ybf.dtype == jnp.bfloat16
    assert [x.dtype for x in gbf] == [jnp.float32, jnp.float32, jnp.bfloat16, jnp.bfloat16]
    # same bf16-rounded inputs: only the bf16 output/cotangent/gradient roundings differ (8 mantissa bits)
    for name, a, b in [("y", ybf, y32)] + list(zip(("td", "tf", "k", "v"), gbf, g32)):
        _close(name, a, np.asarray(b, np.float64), rtol=2e-2, atol=2e-2)


def test_wkv4_check_grads_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        td, tf = rng.normal(size=4) - 0.5, rng.normal(size=4)
        k, v = rng.normal(size=(2, 5, 4)) * 3, rng.normal(size=(2, 5, 4))
        args = [jnp.asarray(x, jnp.float64) for x in (td, tf, k, v)]
        f = jax.jit(lambda *a: wkv4_pallas(*a, interpret=INTERPRET))
        np.testing.assert_allclose(f(*args), jax.jit(_wkv4_ref)(*args), rtol=1e-12, atol=1e-12)
        check_grads(f, args, order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# v6 / v5
# ----------------------------------------------------------------------------------------------------------------


def test_wkv6_matches_upstream_fixture():
    d = np.load(FIXTURES / "wkv6_op.npz")
    names = ("r", "k", "v", "w", "u")
    args = [jnp.asarray(d[n]) for n in names]
    y, grads = _pallas_and_grads(wkv6_pallas, args, jnp.asarray(d["g"]))
    _close("y", y, d["out/y"])
    for name, grad in zip(names, grads):
        _close(f"grad {name}", grad, d[f"grad/{name}"])
    assert np.all(np.asarray(grads[3])[:, [0, -1]] == 0.0)  # w_0 and w_{T-1} never act on the output


@pytest.mark.parametrize(
    "B,T,H,N,block_n",
    [(2, 27, 2, 16, 8), (1, 7, 2, 6, None)],
    ids=["odd_T_split_state", "N_not_pow2_padded"],
)
def test_wkv6_matches_float64_reference(B, T, H, N, block_n):
    args, g = _v6_inputs(B, T, H, N)
    fn = lambda *a, interpret: wkv6_pallas(*a, interpret=interpret, block_n=block_n)  # noqa: E731
    _check_against_ref(fn, _wkv6_ref, args, g, ("r", "k", "v", "w", "u"))


def test_wkv5_is_wkv6_with_static_decay():
    B, T, H, N = 2, 9, 2, 8
    (r, k, v, _, u), g = _v6_inputs(B, T, H, N, seed=2)
    td = jnp.asarray(np.random.default_rng(9).uniform(-2.0, 1.0, size=(H, N)), jnp.float32)

    def ref5(r, k, v, td, u):
        return _wkv6_ref(r, k, v, jnp.broadcast_to(td.reshape(1, 1, H * N), r.shape), u)

    _check_against_ref(wkv5_pallas, ref5, [r, k, v, td, u], g, ("r", "k", "v", "time_decay", "u"))


def test_wkv6_bfloat16_close_to_float32():
    args, g = _v6_inputs(2, 12, 1, 16, seed=4)
    rounded, args_bf = _bf16_pair(args, 3)  # r, k, v in bf16; w, u stay float32
    y32, g32 = _pallas_and_grads(wkv6_pallas, rounded, g)
    ybf, gbf = _pallas_and_grads(wkv6_pallas, args_bf, g)
    assert ybf.dtype == jnp.bfloat16
    assert [x.dtype for x in gbf] == [jnp.bfloat16] * 3 + [jnp.float32] * 2
    for name, a, b in [("y", ybf, y32)] + list(zip(("r", "k", "v", "w", "u"), gbf, g32)):
        _close(name, a, np.asarray(b, np.float64), rtol=2e-2, atol=2e-2)


def test_wkv6_check_grads_float64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        B, T, H, N = 1, 4, 1, 4
        r, k, v = (rng.normal(size=(B, T, H * N)) for _ in range(3))
        w = rng.uniform(-2.0, 0.5, size=(B, T, H * N))
        u = rng.normal(size=(H, N))
        args = [jnp.asarray(x, jnp.float64) for x in (r, k, v, w, u)]
        f = jax.jit(lambda *a: wkv6_pallas(*a, interpret=INTERPRET))
        np.testing.assert_allclose(f(*args), jax.jit(_wkv6_ref)(*args), rtol=1e-12, atol=1e-12)
        check_grads(f, args, order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# against jax_mat.ops.wkv (the lax.scan implementations)
# ----------------------------------------------------------------------------------------------------------------


def test_matches_jax_mat_ops_scan():
    """Same numbers as the lax.scan implementations of jax_mat.ops.wkv (float32, autodiff through the scan)."""
    from jax_mat.ops import wkv as ops  # imported here: the rest of this file does not need jax_mat

    args4, g4 = _v4_inputs(2, 11, 16, seed=5, k_scale=10.0)
    args6, g6 = _v6_inputs(2, 11, 2, 8, seed=6)
    td5 = jnp.asarray(np.random.default_rng(7).uniform(-2.0, 1.0, size=(2, 8)), jnp.float32)
    args5 = args6[:3] + [td5, args6[4]]
    cases = [
        (wkv4_pallas, ops.wkv4_scan, args4, g4),
        (wkv6_pallas, ops.wkv6_scan, args6, g6),
        (wkv5_pallas, ops.wkv5_scan, args5, g6),
    ]
    for fn, scan, args, g in cases:
        y, grads = _pallas_and_grads(fn, args, g)
        y_scan, grads_scan = _vjp_jit(scan, args, g)
        _close(f"{scan.__name__} y", y, np.asarray(y_scan, np.float64))
        for i, (a, b) in enumerate(zip(grads, grads_scan)):
            _close(f"{scan.__name__} grad {i}", a, np.asarray(b, np.float64))


# ----------------------------------------------------------------------------------------------------------------
# GPU lowering (Triton) from this CPU machine
# ----------------------------------------------------------------------------------------------------------------

_TRITON_CALL = "__gpu$xla.gpu.triton"


def _lower_cuda(fn, args):
    """StableHLO text of ``fn`` lowered for ``cuda``; off a GPU for an abstract H100 (jax >= 0.11 needs one)."""
    lower = lambda: jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()  # noqa: E731
    if ON_GPU:
        return lower()
    from jax.sharding import AbstractDevice, AbstractMesh, use_abstract_mesh

    device = AbstractDevice(device_kind=ABSTRACT_GPU, num_cores=132, platform="gpu")
    with use_abstract_mesh(AbstractMesh((1,), ("x",), abstract_device=device)):
        return lower()


def _grad_all(fn, n):
    return jax.grad(lambda *a: jnp.sum(fn(*a).astype(jnp.float32)), argnums=tuple(range(n)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
def test_lowering_for_cuda(dtype):
    B, T, C = 4, 27, 64
    v4_args, _ = _v4_inputs(B, T, C, dtype=dtype)
    v6_args, _ = _v6_inputs(B, T, 1, C, dtype=dtype)
    v5_args = v6_args[:3] + [jnp.zeros((1, C)), v6_args[4]]
    cases = [
        (wkv4_pallas, v4_args, 1, 2),  # forward kernel; forward-with-residuals + backward kernel
        # forward; forward + backward pass 1 + pass 2 split into key-row and value-column kernels (B*H = 4 is
        # small, so the default block_n splits the state)
        (wkv6_pallas, v6_args, 1, 4),
        (wkv5_pallas, v5_args, 1, 4),
    ]
    for fn, args, n_fwd, n_grad in cases:
        assert _lower_cuda(fn, args).count(_TRITON_CALL) == n_fwd, fn.__name__
        assert _lower_cuda(_grad_all(fn, len(args)), args).count(_TRITON_CALL) == n_grad, fn.__name__


def test_lowering_long_sequence_and_split_blocks():
    # T has no compile-time cap (the kernel loops over T); block_c=16 / block_n=16 give the split grids.
    v4_args, _ = _v4_inputs(2, 4096, 64)
    assert _lower_cuda(_grad_all(lambda *a: wkv4_pallas(*a, block_c=16), 4), v4_args).count(_TRITON_CALL) == 2
    v6_args, _ = _v6_inputs(2, 513, 1, 64)
    text = _lower_cuda(_grad_all(lambda *a: wkv6_pallas(*a, block_n=16), 5), v6_args)
    assert text.count(_TRITON_CALL) == 4
    text = _lower_cuda(_grad_all(lambda *a: wkv6_pallas(*a, block_n=64), 5), v6_args)
    assert text.count(_TRITON_CALL) == 3  # one fused reverse pass holding the whole 64 x 64 adjoint


# ----------------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    # numpy inputs: validation happens before anything is traced
    td, tf, k, v = (np.asarray(x) for x in _v4_inputs(2, 5, 8)[0])
    with pytest.raises(ValueError, match="v must have the shape of k"):
        wkv4_pallas(td, tf, k, v[:, :4], interpret=True)
    with pytest.raises(ValueError, match="same dtype"):
        wkv4_pallas(td, tf, k, v.astype(jnp.bfloat16), interpret=True)
    with pytest.raises(ValueError, match=r"shape \(C,\)"):
        wkv4_pallas(td[:4], tf, k, v, interpret=True)
    with pytest.raises(ValueError, match="must be float32"):
        wkv4_pallas(td, tf, k.astype(np.int32), v.astype(np.int32), interpret=True)
    with pytest.raises(ValueError, match=r"\[B, T, C\]"):
        wkv4_pallas(td, tf, k[0], v[0], interpret=True)
    with pytest.raises(ValueError, match="block_c"):
        wkv4_pallas(td, tf, k, v, interpret=True, block_c=3)

    r, k6, v6, w, u = (np.asarray(x) for x in _v6_inputs(1, 5, 2, 4)[0])
    with pytest.raises(ValueError, match="H \\* N"):
        wkv6_pallas(r, k6, v6, w, u[:1], interpret=True)
    with pytest.raises(ValueError, match="w must have the shape of r"):
        wkv6_pallas(r, k6, v6, w[:, :3], u, interpret=True)
    with pytest.raises(ValueError, match="share one dtype"):
        wkv6_pallas(r, k6.astype(jnp.bfloat16), v6, w, u, interpret=True)
    with pytest.raises(ValueError, match="time_decay must have the shape of u"):
        wkv5_pallas(r, k6, v6, w, u, interpret=True)


@pytest.mark.skipif(ON_GPU, reason="the kernels run natively on a GPU")
def test_gpu_kernel_on_cpu_without_interpret_raises():
    (td, tf, k, v), _ = _v4_inputs(1, 3, 8)
    (r, k6, v6, w, u), _ = _v6_inputs(1, 3, 1, 8)
    with pytest.raises(ValueError, match="interpret=True"):
        wkv4_pallas(td, tf, k, v)
    with pytest.raises(ValueError, match="interpret=True"):
        wkv6_pallas(r, k6, v6, w, u)
    with pytest.raises(ValueError, match="interpret=True"):
        wkv5_pallas(r, k6, v6, u, u)
    with pytest.raises(ValueError, match="interpret mode"):  # under jit Pallas itself refuses at lowering
        jax.jit(wkv4_pallas)(td, tf, k, v)
