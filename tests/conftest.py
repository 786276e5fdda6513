"""Fixtures shared by the test modules (keep this small and generic)."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real public test data, kept in the repository (tests/data/README.md: sources and licences).
TEST_DATA = Path(__file__).absolute().parent / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The directory of the real test data files (tests/data/README.md describes them)."""
    return TEST_DATA
