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


# Modules whose CLI runs take longest go to the workers first, so that both workers finish together.
HEAVY_MODULES_FIRST = ("test_gpu_suite", "test_finetune", "test_training", "test_reproduce")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker reads the groups
def pytest_collection_modifyitems(config, items):
    """Schedule for two pytest-xdist workers (``-n 2 --dist loadgroup``, pyproject.toml). A module with a
    module-scoped fixture (a compiled environment, a trained checkpoint, the GPU suite's rehearsal) goes whole to one
    worker, so that the fixture is built once; every other test is scheduled on its own. The heaviest modules come
    first."""
    shared = set()
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures and any(d and d[-1].scope == "module" for d in fixtures.name2fixturedefs.values()):
            shared.add(item.module.__name__)
    for item in items:
        if item.module.__name__ in shared:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def rank(item):
        name = item.module.__name__
        return HEAVY_MODULES_FIRST.index(name) if name in HEAVY_MODULES_FIRST else len(HEAVY_MODULES_FIRST)

    items.sort(key=rank)  # stable: the order inside a module is kept
