"""How the model's hot loops are compiled (numba), the compiled splitmix64 they
hash with (row initialization, tables), and the home cell of a key in the
open-addressing tables of `model.slotmap` and `model.grouping`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import numba
import numpy as np

from model.hashing import GOLDEN, finalize64

F = TypeVar("F", bound=Callable[..., Any])


def compiled(func: F, inline: bool = False) -> F:
    """`func` compiled by numba, its machine code cached where numba can write
    (beside the source, the user's cache directory, or `NUMBA_CACHE_DIR`). Where
    none is writable (a read-only image without a home), each process compiles
    on first use instead of failing to import."""
    mode: Literal["always", "never"] = "always" if inline else "never"
    try:
        out = numba.njit(cache=True, inline=mode)(func)
    except RuntimeError:
        out = numba.njit(cache=False, inline=mode)(func)
    return cast(F, out)


_finalize = compiled(finalize64, inline=True)


def _splitmix_py(x: np.uint64) -> np.uint64:
    """splitmix64's output function of one uint64: the golden-ratio step, then the
    finalizer."""
    return np.uint64(_finalize(x + GOLDEN))


splitmix = compiled(_splitmix_py, inline=True)


def _home_py(key: int, mask: int) -> int:
    """The key's cell: ids are hashes already, but a crafted or sequential set of ids
    must not pile up in one probe chain."""
    return int(np.int64(splitmix(np.uint64(key)) & np.uint64(mask)))


home = compiled(_home_py, inline=True)


def table_size(entries: int) -> int:
    """The smallest power of two (at least 8) with room for `entries` at load <= 1/2."""
    size = 8
    while size < 2 * entries:
        size *= 2
    return size
