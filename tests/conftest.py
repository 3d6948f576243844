import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MAT_FIXTURES = SHARED / "fixtures" / "mat_reference"
MULTI_DIM_FIXTURES = SHARED / "fixtures" / "multi_dim_continuous"


@pytest.fixture(scope="session")
def mat_fixture_paths():
    paths = sorted(MAT_FIXTURES.glob("*.npz"))
    assert paths, f"MAT fixtures not found under {MAT_FIXTURES} (CI keeps ../shared beside the clone)"
    return paths


@pytest.fixture(scope="session")
def multi_dim_fixture_paths():
    """MAT and MARWKV v4/v6 with 4 continuous action dimensions per agent (``multi_dim_continuous``)."""
    paths = sorted(MULTI_DIM_FIXTURES.glob("*.npz"))
    assert len(paths) == 3, f"multi-dimension fixtures not found under {MULTI_DIM_FIXTURES} (CI keeps ../shared beside the clone)"
    return paths


def pytest_configure(config):
    """Reuse compiled programs across tests (many tests build the same tiny trainer)."""
    import os
    import tempfile

    import jax

    cache = os.path.join(tempfile.gettempdir(), "jax_mat_test_compile_cache")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_collection_modifyitems(config, items):
    """Keep a module whose tests share a module-scoped fixture on one pytest-xdist worker (``--dist loadgroup``), so
    that the fixture (a compiled environment, a trained checkpoint, the GPU suite's rehearsal) is built once; every
    other test is scheduled on its own."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = fixtures.name2fixturedefs.values() if fixtures else ()
        if any(d[-1].scope == "module" for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
