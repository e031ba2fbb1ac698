"""Every compiled (numba) kernel of the model, each beside its reference twin.

A kernel `name` is `compiled(name_reference)`: the reference is the plain
Python/numpy function it is compiled from, which also runs interpreted (slowly)
and is what `tests/model/test_kernels.py` pins every kernel against. The
kernels are the scalar loops numpy cannot vectorize: the splitmix64 hash and
the home cell of the open-addressing tables (`model.slotmap`,
`model.grouping`), their probes, the grouping of a batch's ids, the hashed
uniforms of new rows (`model.row_layout`) and the fused relu + dropout pass
(`model.dropout`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import numba
import numpy as np

from model.hashing import GOLDEN, finalize64

F = TypeVar("F", bound=Callable[..., Any])
Grouped = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# A slot-map cell's value: a slot >= 0, or one of these states.
SLOT_EMPTY, SLOT_TOMB = -1, -2


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


def table_size(entries: int) -> int:
    """The smallest power of two (at least 8) with room for `entries` at load <= 1/2."""
    size = 8
    while size < 2 * entries:
        size *= 2
    return size


_finalize = compiled(finalize64, inline=True)


def splitmix_reference(x: np.uint64) -> np.uint64:
    """splitmix64's output function of one uint64: the golden-ratio step, then the
    finalizer."""
    return np.uint64(_finalize(x + GOLDEN))


splitmix = compiled(splitmix_reference, inline=True)


def home_reference(key: int, mask: int) -> int:
    """The key's cell: ids are hashes already, but a crafted or sequential set of ids
    must not pile up in one probe chain."""
    return int(np.int64(splitmix(np.uint64(key)) & np.uint64(mask)))


home = compiled(home_reference, inline=True)


def find_reference(cells: np.ndarray, mask: int, keys: np.ndarray) -> np.ndarray:
    """The slot-map table position of each key, -1 where absent."""
    out = np.empty(len(keys), np.int64)
    for i in range(len(keys)):
        key = keys[i]
        p = home(key, mask)
        found = -1
        while True:
            value = cells[p, 1]
            if value == SLOT_EMPTY:
                break
            if value >= 0 and cells[p, 0] == key:
                found = p
                break
            p = (p + 1) & mask
        out[i] = found
    return out


def put_reference(cells: np.ndarray, mask: int, keys: np.ndarray, values: np.ndarray) -> int:
    """Places absent, distinct keys in the first free cell of their chains;
    returns how many tombstones they reused."""
    reused = 0
    for i in range(len(keys)):
        p = home(keys[i], mask)
        while cells[p, 1] >= 0:
            p = (p + 1) & mask
        if cells[p, 1] == SLOT_TOMB:
            reused += 1
        cells[p, 0] = keys[i]
        cells[p, 1] = values[i]
    return reused


find = cast(Callable[[np.ndarray, int, np.ndarray], np.ndarray], compiled(find_reference))
put = cast(Callable[[np.ndarray, int, np.ndarray, np.ndarray], int], compiled(put_reference))


def group_reference(ids: np.ndarray, mask: int) -> Grouped:
    """(unique, inverse, order, starts) of `model.grouping.UniqueEntries`: one pass
    numbers the ids through a hash table of (key, group) cells; a counting sort
    then lists each group's entries. Returns empty arrays if the ids fill half
    the table (the caller retries with a larger one)."""
    n = len(ids)
    keys = np.empty(mask + 1, np.int64)
    group_of = np.full(mask + 1, -1, np.int32)
    unique = np.empty(n, np.int64)
    inverse = np.empty(n, np.int64)
    starts = np.zeros(n + 1, np.int64)
    groups = 0
    for i in range(n):
        key = ids[i]
        p = home(key, mask)
        while group_of[p] >= 0 and keys[p] != key:
            p = (p + 1) & mask
        if group_of[p] < 0:
            if 2 * groups > mask:
                return unique[:0], inverse[:0], inverse[:0], starts[:0]
            keys[p] = key
            group_of[p] = groups
            unique[groups] = key
            groups += 1
        inverse[i] = group_of[p]
        starts[inverse[i] + 1] += 1
    starts = np.cumsum(starts[: groups + 1])
    fill = starts[:groups].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[inverse[i]]] = i
        fill[inverse[i]] += 1
    return unique[:groups].copy(), inverse, order, starts


group = cast(Callable[[np.ndarray, int], Grouped], compiled(group_reference))


def uniforms_reference(ids: np.ndarray, seed: int, u1: np.ndarray, theta: np.ndarray) -> None:
    """u1 [U, pairs] in (0, 1) and theta [U, pairs] in (0, 2 pi), float32: the two
    halves of splitmix64(base + (j + 1) * golden), base = splitmix64(id ^ seed)."""
    scale = np.float32(2.0**-32)
    angle = scale * np.float32(2.0 * np.pi)
    for i in range(u1.shape[0]):
        base = splitmix(np.uint64(ids[i]) ^ np.uint64(seed))
        for j in range(u1.shape[1]):
            bits = splitmix(base + np.uint64(j + 1) * GOLDEN)
            u1[i, j] = (np.float32(bits >> np.uint64(32)) + np.float32(0.5)) * scale
            theta[i, j] = (np.float32(bits & np.uint64(0xFFFFFFFF)) + np.float32(0.5)) * angle


uniforms = compiled(uniforms_reference)


def keep_bit_reference(word: np.uint64, k: int) -> np.uint64:
    """The bit of element k (0..63) of a random word read as eight bytes, the lowest
    first: byte k // 8, most significant bit first (numpy's `unpackbits` order, as
    the float masks)."""
    return (word >> np.uint64(8 * (k >> 3) + 7 - (k & 7))) & np.uint64(1)


keep_bit = compiled(keep_bit_reference, inline=True)


def relu_keep_reference(
    h: np.ndarray, bias: np.ndarray, words: np.ndarray, scale: np.float32
) -> None:
    """h <- relu(h + bias) * scale where the element's bit is set, 0 where not, for
    h a flat [rows * len(bias)] matrix; element e reads bit e % 64 of word e // 64.
    The inner loop vectorizes: it reads 64 biases in a row from the biases
    repeated cyclically (a word of elements may wrap onto the next row)."""
    if len(words) == 0:
        return
    cols = len(bias)
    cyclic = np.empty(cols + 64, np.float32)
    for j in range(cols + 64):
        cyclic[j] = bias[j % cols]
    zero = np.float32(0.0)
    column = 0
    for w in range(len(words)):
        word = words[w]
        out = h[64 * w : 64 * w + 64]  # the last one may be shorter
        add = cyclic[column : column + len(out)]
        for k in range(len(out)):
            out[k] = max(out[k] + add[k], zero) * (np.float32(keep_bit(word, k)) * scale)
        column += 64
        while column >= cols:  # subtracting beats a 64-bit division per word
            column -= cols


relu_keep = compiled(relu_keep_reference)
