#!/usr/bin/env python
"""The wheels the lent GPU machine lacks: resolve them for its Python, download them, check their size.

    python scripts/gpu_bundle.py DIR [--python PYTHON3.12] [--limit-mib 60]

(``bash scripts/make_gpu_bundle.sh DIR`` runs this.) The GPU machine (``scripts/gpu_preinstalled.txt``) runs
Python 3.12 on Linux x86-64 with jax 0.11.2 and reaches no package index. pip's resolver, run by a Python 3.12
interpreter for that platform (``--dry-run --report``), takes ``REQUIREMENTS`` with jax and jaxlib held at the
machine's version (``MACHINE``), so every version it picks works beside them; the names the machine already has are
dropped and the rest are downloaded into ``DIR`` one wheel each (``pip download --no-deps``). Wheels in ``DIR`` that
are not part of the bundle are removed (two versions of one package stop the install there). ``DIR/manifest.txt``
lists ``name==version`` and sizes. Over ``--limit-mib`` in all: one ``error:`` line and exit status 1.

There the wheels install with ``pip install --no-index --no-deps --target`` (``scripts/gpu_suite.sh``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PREINSTALLED = os.path.join(HERE, "gpu_preinstalled.txt")
# What jax_mat needs beyond the machine's packages (pyproject.toml's dependencies; not distrax, which nothing
# imports and whose tfp-nightly would cost tens of MiB).
REQUIREMENTS = ["jaxmarl==0.2.0", "brax==0.14.2", "mujoco==4.0.1", "mujoco-mjx==3.17.0", "tensorboardX==2.6.5"]
MACHINE = ["jax==0.11.2", "jaxlib==0.11.2"]
PYTHON_VERSION = "3.12"
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (39, 35, 34, 31, 28, 27, 24, 17, 12, 5)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
LIMIT_MIB = 60.0


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def preinstalled(path: str = PREINSTALLED) -> set[str]:
    with open(path) as f:
        return {normalise(line.split("#")[0].strip()) for line in f if line.split("#")[0].strip()}


def target_flags() -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for platform in PLATFORMS:
        flags += ["--platform", platform]
    return flags


def find_python(explicit: str | None) -> str:
    """A Python 3.12 interpreter for pip's resolver (Requires-Python is judged by the running interpreter)."""
    candidates = [explicit] if explicit else [
        os.environ.get("PYTHON312"), shutil.which("python3.12"), *sorted(glob.glob("/root/.pyenv/versions/3.12*/bin/python3.12")),
        sys.executable]
    for py in filter(None, candidates):
        try:
            out = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if out == PYTHON_VERSION:
            return py
    raise SystemExit(f"error: pip's resolver needs a Python {PYTHON_VERSION} interpreter (pass --python or set "
                     "PYTHON312); none found")


def resolve(python: str) -> list[tuple[str, str]]:
    """``(name, version)`` of every distribution ``REQUIREMENTS`` and ``MACHINE`` need, on the GPU machine's platform."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        cmd = [python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", report,
               "--target", os.path.join(tmp, "target"), *target_flags(), *REQUIREMENTS, *MACHINE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise SystemExit(f"error: pip could not resolve the bundle: {tail}")
        with open(report) as f:
            installs = json.load(f)["install"]
    return [(item["metadata"]["name"], item["metadata"]["version"]) for item in installs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--python", help=f"a Python {PYTHON_VERSION} interpreter for the resolver")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    args = parser.parse_args(argv)

    have = preinstalled()
    needed = sorted((n, v) for n, v in resolve(find_python(args.python)) if normalise(n) not in have)
    os.makedirs(args.dir, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *target_flags(), "-d", args.dir,
           *(f"{n}=={v}" for n, v in needed)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"error: pip could not download the bundle: {tail}", file=sys.stderr)
        return 1

    wanted = {normalise(n): v for n, v in needed}
    wheels = {}
    for path in sorted(glob.glob(os.path.join(args.dir, "*.whl"))):
        name, version = os.path.basename(path).split("-")[:2]
        if wanted.get(normalise(name)) == version:
            wheels[normalise(name)] = path
        else:
            os.remove(path)
            print(f"removed {os.path.basename(path)} (not part of this bundle)")
    missing = [f"{n}=={v}" for n, v in needed if normalise(n) not in wheels]
    if missing:
        print(f"error: no wheel downloaded for {', '.join(missing)}", file=sys.stderr)
        return 1

    sizes = {os.path.basename(p): os.path.getsize(p) for p in wheels.values()}
    total_mib = sum(sizes.values()) / 2**20
    with open(os.path.join(args.dir, "manifest.txt"), "w") as f:
        f.write(f"# {len(needed)} wheels, {total_mib:.1f} MiB, for Python {PYTHON_VERSION} manylinux x86-64 beside "
                f"{' '.join(MACHINE)}\n")
        for n, v in needed:
            f.write(f"{n}=={v}  {os.path.getsize(wheels[normalise(n)]) / 2**20:.2f} MiB\n")
    for wheel, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"{size / 2**20:7.2f} MiB  {wheel}")
    print(f"{len(wheels)} wheels, {total_mib:.1f} MiB in {args.dir} (limit {args.limit_mib:g} MiB)")
    if total_mib > args.limit_mib:
        print(f"error: the bundle in {args.dir} is {total_mib:.1f} MiB, over the limit of {args.limit_mib:g} MiB",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
