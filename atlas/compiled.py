"""numba compilation as the split's compiled code uses it (atlas.blockparse, atlas.seen)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def compiled(function):
    """numba-compiled without the GIL (worker threads run it side by side), cached beside the module (or in
    the user's cache) so that only the first run of an install compiles (a few seconds); where no cache
    folder is writable, compiled in each process."""
    from numba import njit  # here: skip_blas_check must be importable before numba is

    try:
        return njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, boundscheck=False)(function)


def skip_blas_check() -> Callable[[], None]:
    """numba's first call (in whichever thread makes it) looks for a BLAS by importing scipy.linalg: 0.12 s
    of its start-up, on the split's critical path, for code that multiplies no matrix. From now until the
    returned function is called, scipy.linalg cannot be imported in this process, so numba records that
    there is no BLAS."""
    finder = _NoScipyLinalg()
    sys.meta_path.insert(0, finder)

    def restore() -> None:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)

    return restore


class _NoScipyLinalg:
    def find_spec(self, name, path=None, target=None):
        if name == "scipy.linalg" or name.startswith("scipy.linalg."):
            raise ModuleNotFoundError(f"{name} is not imported while numba starts", name=name)
        return None
