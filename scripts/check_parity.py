#!/usr/bin/env python
"""Compare jax_mat's MAT and MARWKV with the official PyTorch models on fixture files.

    python scripts/check_parity.py ../shared/fixtures/mat_reference/*.npz [--n-head H]
    python scripts/check_parity.py ../shared/fixtures/marwkv_reference/marwkv_*.npz
    python scripts/check_parity.py ../shared/fixtures/marwkv_reference      # a folder: its model fixtures

Each fixture is rebuilt from its own shapes (model family and RWKV version
from the parameter names, batch, agents, obs/action sizes, blocks, width,
discrete or continuous; MAT's head count comes from the ``cases.json`` beside
it or ``--n-head``, MARWKV's from the weights). Prints one row per quantity
with its max absolute error; exits 1 if any is outside tolerance, 2 on bad
input.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from jax_mat.parity import GRAD_TOL, OUTPUT_TOL, compare_fixture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixtures", nargs="+", help="fixture .npz files, or folders of them")
    parser.add_argument("--n-head", type=int, default=None, help="MAT attention heads, if no cases.json says")
    args = parser.parse_args(argv)
    paths = []
    for path in args.fixtures:
        if not os.path.exists(path):
            print(f"{path}: error: no such file or folder", file=sys.stderr)
            return 2
        # A folder: its model fixtures (mat_*.npz / marwkv_*.npz; the wkv*_op.npz operator fixtures are
        # checked by tests/test_wkv_ops.py and tests/test_pallas_wkv.py).
        found = sorted(glob.glob(os.path.join(path, "ma*_*.npz"))) if os.path.isdir(path) else [path]
        if not found:
            print(f"{path}: error: the folder holds no mat_*.npz or marwkv_*.npz fixture", file=sys.stderr)
            return 2
        paths.extend(found)
    failed = 0
    for path in paths:
        try:
            rows = compare_fixture(path, n_head=args.n_head)
        except ValueError as err:
            print(f"{path}: error: {err}", file=sys.stderr)
            return 2
        print(f"\n{path}  (outputs atol {OUTPUT_TOL[0]:g} rtol {OUTPUT_TOL[1]:g}; grads atol {GRAD_TOL[0]:g} rtol {GRAD_TOL[1]:g})")
        print(f"  {'quantity':58s} {'max abs err':>12s}  status")
        for row in rows:
            print(f"  {row.quantity:58s} {row.max_abs_err:12.3e}  {'ok' if row.ok else 'FAIL'}")
        bad = sum(not r.ok for r in rows)
        failed += bad
        print(f"  {len(rows) - bad}/{len(rows)} within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
