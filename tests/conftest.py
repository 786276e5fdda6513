"""Fixtures shared by the test modules (keep this small and generic)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

# The real public test data, kept in the repository (tests/data/README.md: sources and licences).
TEST_DATA = Path(__file__).absolute().parent / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The directory of the real test data files (tests/data/README.md describes them)."""
    return TEST_DATA


@pytest.fixture
def fifo(tmp_path):
    """fifo(data): a new named pipe that a thread fills with `data` once a reader opens it (a reader that
    stops at an error may leave the rest unwritten)."""
    feeders = []

    def make(data: bytes) -> Path:
        path = tmp_path / f"input-{len(feeders)}.fifo"
        os.mkfifo(path)

        def feed():
            try:
                with open(path, "wb") as handle:
                    handle.write(data)
            except BrokenPipeError:
                pass

        feeders.append(threading.Thread(target=feed, daemon=True))
        feeders[-1].start()
        return path

    yield make
    for feeder in feeders:
        feeder.join(timeout=10)
