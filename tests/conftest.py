import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MAT_FIXTURES = SHARED / "fixtures" / "mat_reference"


@pytest.fixture(scope="session")
def mat_fixture_paths():
    paths = sorted(MAT_FIXTURES.glob("*.npz"))
    assert paths, f"MAT fixtures not found under {MAT_FIXTURES} (CI keeps ../shared beside the clone)"
    return paths
