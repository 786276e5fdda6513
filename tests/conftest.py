"""Fixtures shared by the test modules (keep this small and generic)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real public test data: shared/data beside the checkout (CI clones the repo with shared/ beside it).
SHARED_DATA = Path(__file__).absolute().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The directory of the real test data files (shared/data/README.md describes them)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}: check out shared/ beside the repository")
    return SHARED_DATA
