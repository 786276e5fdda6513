"""numba compilation as the split's compiled code uses it (atlas.blockparse, atlas.seen)."""

from __future__ import annotations

from numba import njit


def compiled(function):
    """numba-compiled without the GIL (worker threads run it side by side), cached beside the module (or in
    the user's cache) so that only the first run of an install compiles (a few seconds); where no cache
    folder is writable, compiled in each process."""
    try:
        return njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, boundscheck=False)(function)
