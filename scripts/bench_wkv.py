"""WKV operator throughput: forward + backward of RWKV-4 and RWKV-6 WKV, per implementation.

Usage:
  python scripts/bench_wkv.py [--impl scan,chunked,pallas] [--version v4,v6] [--repeats 3]
                              [--shapes 4096x8x64 1024x32x64 256x256x64 64x1024x64 32x256x64 8x256x64]

For every (version, batch B, sequence T, channels C) and implementation, one jitted call computes ``y`` and the
gradients of ``sum(y * g)`` w.r.t. every input (``jax.vjp``); the figure is the median of ``--repeats`` calls
after a warm-up (compilation) call, each ended by ``jax.block_until_ready``; the implementations of one shape are
timed round-robin (one call each, ``--repeats`` rounds), so a load change on a shared machine hits them alike. With
``--forward`` the forward pass alone is timed as well (what ``act``'s encoder runs). v6 uses one head of
N = C = 64 (upstream MARWKV's HEAD_SIZE). float32 throughout. The last two default shapes are MARWKV's at 256
agents: ``act`` for 32 environments, and one micro-batch of the trainer's update (8 samples).

Effective GB/s counts the bytes every implementation has to move at least once: the inputs, the output, the
cotangent ``g`` and the gradients (v4: k, v, y, g, dk, dv = 6 x B*T*C floats; v6: r, k, v, w, y, g, dr, dk, dv, dw
= 10 x B*T*C floats; the [C]/[H, N] parameters are negligible), divided by the fwd+bwd time. Each row also
carries the device's copy bandwidth, measured in the same run (``copy_gb_per_s``: a jitted ``x + 1`` over
``--copy-mib`` MiB of float32, bytes read + written / time, median of ``--repeats`` + 2 calls) and the
fraction of it the implementation reaches (``fraction_of_copy``).

Implementations:
* ``scan``: ``jax_mat.ops.wkv.wkv4_scan`` / ``wkv6_scan`` (``lax.scan`` over T, autodiff for the backward).
* ``chunked``: ``jax_mat.ops.wkv.wkv4_chunked`` (the recurrence within chunks of 16, all chunks at once, then
  across chunks) and ``wkv6_chunked`` (a causal product within chunks of 16, the state carried across chunks);
  autodiff for the backward.
* ``pallas``: ``pallas_kernels.wkv4.wkv4_pallas`` / ``pallas_kernels.wkv6.wkv6_pallas``. Timed on a GPU only; on
  a CPU it runs once in Pallas interpret mode at a small shape as a correctness check against ``scan``
  (interpret mode is an emulator: timing it would say nothing about the kernel).

stdout: one JSON object per timed case; a Markdown table and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_SHAPES = ["4096x8x64", "1024x32x64", "256x256x64", "64x1024x64", "32x256x64", "8x256x64"]
IMPLS = ("scan", "chunked", "pallas")


# ----------------------------------------------------------------------------------------------------------------
# implementations
# ----------------------------------------------------------------------------------------------------------------


def scan_impls():
    from jax_mat.ops import wkv as ops

    return {"v4": ops.wkv4_scan, "v6": ops.wkv6_scan}, "jax_mat.ops.wkv"


def chunked_impls():
    from jax_mat.ops import wkv as ops

    return {"v4": ops.wkv4_chunked, "v6": ops.wkv6_chunked}


def pallas_impls(interpret: bool):
    from pallas_kernels.wkv4 import wkv4_pallas
    from pallas_kernels.wkv6 import wkv6_pallas

    return {
        "v4": lambda *a: wkv4_pallas(*a, interpret=interpret),
        "v6": lambda *a: wkv6_pallas(*a, interpret=interpret),
    }


# ----------------------------------------------------------------------------------------------------------------
# inputs, timing
# ----------------------------------------------------------------------------------------------------------------


def make_inputs(version: str, B: int, T: int, C: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    g = f32(rng.normal(size=(B, T, C)))
    if version == "v4":
        args = [f32(rng.normal(size=C) - 1.0), f32(rng.normal(size=C)),
                f32(rng.uniform(-5, 5, size=(B, T, C))), f32(rng.normal(size=(B, T, C)))]
    else:
        r, k, v = (f32(rng.normal(size=(B, T, C)) * 0.5) for _ in range(3))
        args = [r, k, v, f32(rng.uniform(-3, 1, size=(B, T, C))), f32(rng.normal(size=(1, C)))]
    return args, g


def bytes_moved(version: str, B: int, T: int, C: int) -> int:
    per = 6 if version == "v4" else 10
    return per * B * T * C * 4


def fwd_bwd(fn):
    def run(args, g):
        y, vjp = jax.vjp(fn, *args)
        return y, vjp(g)

    return jax.jit(run)


def forward(fn):
    return jax.jit(lambda args, g: fn(*args))


def time_round_robin(fns: dict, args, g, repeats: int) -> tuple[dict, dict]:
    """Median seconds per call of each ``fns[name](args, g)``, the calls interleaved across names, and the error
    of each one that failed to compile or run (left out of the timing)."""
    failed = {}
    for name, f in list(fns.items()):
        try:
            jax.block_until_ready(f(args, g))  # compile + warm-up
        except Exception as err:  # noqa: BLE001 - a kernel that does not build on this device is reported, not fatal
            failed[name] = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
    fns = {name: f for name, f in fns.items() if name not in failed}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(args, g))
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, failed


def check_pallas_interpret(scan, pallas, version: str) -> float:
    """Max relative difference (output and every gradient) of Pallas interpret mode vs scan at a small shape."""
    args, g = make_inputs(version, 3, 13, 64, seed=1)
    ys = fwd_bwd(scan)(args, g)
    yp = fwd_bwd(pallas)(args, g)
    leaves_s, leaves_p = jax.tree.leaves(ys), jax.tree.leaves(yp)
    return max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30)) for a, b in zip(leaves_s, leaves_p))


def copy_bandwidth(mib: float, repeats: int) -> float:
    """GB/s of a jitted elementwise ``x + 1`` over ``mib`` MiB of float32 (bytes read + written / median time)."""
    n = int(mib * 2**20) // 4
    x = jnp.zeros((n,), jnp.float32)
    copy = jax.jit(lambda x: x + 1.0)
    jax.block_until_ready(copy(x))
    times = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        jax.block_until_ready(copy(x))
        times.append(time.perf_counter() - t0)
    return 2 * 4 * n / statistics.median(times) / 1e9


def parse_shape(s: str):
    try:
        B, T, C = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 1024x32x64 (batch x T x C), got {s!r}") from None
    return B, T, C


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="scan,chunked,pallas", help="comma-separated subset of scan,chunked,pallas")
    p.add_argument("--version", default="v4,v6", help="comma-separated subset of v4,v6")
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[parse_shape(s) for s in DEFAULT_SHAPES])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--forward", action="store_true", help="also time the forward pass alone")
    p.add_argument("--copy-mib", type=float, default=None,
                   help="MiB copied to measure the device's bandwidth (default 1024 on a GPU, 64 elsewhere)")
    a = p.parse_args(argv)
    impls = [x.strip() for x in a.impl.split(",") if x.strip()]
    versions = [x.strip() for x in a.version.split(",") if x.strip()]
    if not set(impls) <= set(IMPLS) or not impls:
        p.error(f"--impl must be a subset of {','.join(IMPLS)}; got {a.impl!r}")
    if not set(versions) <= {"v4", "v6"} or not versions:
        p.error(f"--version must be a subset of v4,v6; got {a.version!r}")

    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    log = lambda *x: print(*x, file=sys.stderr, flush=True)  # noqa: E731
    scans, scan_source = scan_impls()
    log(f"jax {jax.__version__}, backend {backend} ({device}); scan = {scan_source}")
    copy_mib = a.copy_mib or (1024 if backend == "gpu" else 64)
    copy_gbs = copy_bandwidth(copy_mib, a.repeats)
    log(f"copy bandwidth ({copy_mib:g} MiB, x + 1): {copy_gbs:.1f} GB/s")

    on_gpu = backend == "gpu"
    timed = [i for i in impls if i != "pallas" or on_gpu]
    if "pallas" in impls and not on_gpu:
        interp = pallas_impls(interpret=True)
        for version in versions:
            err = check_pallas_interpret(scans[version], interp[version], version)
            log(f"pallas {version}: interpret-mode check vs scan at (3, 13, 64), fwd+all grads: max rel diff {err:.2e}"
                " (not timed: no GPU)")
    fns = {"scan": scans, "chunked": chunked_impls()}
    if "pallas" in timed:
        fns["pallas"] = pallas_impls(interpret=False)

    rows = []
    for version in versions:
        for B, T, C in a.shapes:
            args, g = make_inputs(version, B, T, C)
            nbytes = bytes_moved(version, B, T, C)
            here = [impl for impl in timed if version in fns[impl]]
            progs = {(impl, "fwd_bwd"): fwd_bwd(fns[impl][version]) for impl in here}
            if a.forward:
                progs.update({(impl, "fwd"): forward(fns[impl][version]) for impl in here})
            secs, failed = time_round_robin(progs, args, g, a.repeats)
            for (impl, what), error in failed.items():
                print(json.dumps(dict(version=version, impl=impl, batch=B, T=T, C=C, what=what, status="failed",
                                      error=error, backend=backend, device=device)), flush=True)
                log(f"{version} {impl:7s} B={B:5d} T={T:5d} C={C}: {what} failed: {error}")
            for impl in here:
                if (impl, "fwd_bwd") in failed or (a.forward and (impl, "fwd") in failed):
                    continue
                t = secs[(impl, "fwd_bwd")]
                fwd_ms = round(secs[(impl, "fwd")] * 1e3, 3) if a.forward else None
                row = dict(version=version, impl=impl, batch=B, T=T, C=C, fwd_bwd_ms=round(t * 1e3, 3),
                           fwd_ms=fwd_ms, gb_per_s=round(nbytes / t / 1e9, 3), copy_gb_per_s=round(copy_gbs, 3),
                           fraction_of_copy=round(nbytes / t / 1e9 / copy_gbs, 4), backend=backend, device=device)
                rows.append(row)
                print(json.dumps(row), flush=True)
                fwd_note = f"  fwd {fwd_ms:8.2f} ms" if a.forward else ""
                log(f"{version} {impl:7s} B={B:5d} T={T:5d} C={C}: {t * 1e3:9.2f} ms  {nbytes / t / 1e9:7.3f} GB/s"
                    + fwd_note)
            del args, g

    if rows:
        log(f"\n| op | impl | batch | T | C | fwd+bwd ms | fwd ms | effective GB/s | of copy ({copy_gbs:.1f} GB/s) |"
            "\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        fwd = f"{r['fwd_ms']:.1f}" if r["fwd_ms"] is not None else "-"
        log(f"| wkv{r['version'][1:]} | {r['impl']} | {r['batch']} | {r['T']} | {r['C']} | {r['fwd_bwd_ms']:.1f} | "
            f"{fwd} | {r['gb_per_s']:.2f} | {100 * r['fraction_of_copy']:.1f}% |")


if __name__ == "__main__":
    main()
