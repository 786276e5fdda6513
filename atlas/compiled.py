"""numba compilation as the split's compiled code uses it (atlas.blockparse, atlas.seen)."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from numba import njit


def compiled(function):
    """numba-compiled without the GIL (worker threads run it side by side), cached beside the module (or in
    the user's cache) so that only the first run of an install compiles (a few seconds); where no cache
    folder is writable, compiled in each process."""
    try:
        return njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, boundscheck=False)(function)


@contextmanager
def without_blas_check():
    """numba's first call looks for a BLAS by importing scipy.linalg (0.17 s of its ~0.45 s start-up, on
    the split's critical path); the compiled code here multiplies no matrix. Within this block, and in this
    thread only, scipy cannot be imported, so numba records that there is no BLAS. Where scipy is already
    imported, nothing changes."""
    finder = _NoScipy(threading.current_thread())
    import sys

    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


class _NoScipy:
    def __init__(self, thread: threading.Thread):
        self.thread = thread

    def find_spec(self, name, path=None, target=None):
        if (name == "scipy" or name.startswith("scipy.")) and threading.current_thread() is self.thread:
            raise ModuleNotFoundError(f"{name} is not imported while numba starts", name=name)
        return None
