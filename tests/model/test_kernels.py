"""Every compiled kernel equals its reference twin (and, where one exists, the numpy
formulation it replaces) bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pytest

from model import kernels
from model.hashing import GOLDEN, mix64

RNG = np.random.default_rng(7)


def _interpreted(kernel: Any) -> Callable[..., Any]:
    return kernel.py_func  # type: ignore[no-any-return]  # the numba dispatcher's source


def _ids(n: int, distinct: int) -> np.ndarray:
    pool = RNG.integers(-(2**63), 2**63 - 1, size=distinct, dtype=np.int64)
    return pool[RNG.integers(0, distinct, size=n)]


def test_splitmix_and_home_equal_numpy() -> None:
    x = RNG.integers(0, 2**64 - 1, size=200, dtype=np.uint64)
    want = mix64(x + GOLDEN)
    got = np.array([kernels.splitmix(v) for v in x], dtype=np.uint64)
    np.testing.assert_array_equal(got, want)
    keys = x.view(np.int64)
    homes = [kernels.home(k, 1023) for k in keys]
    assert homes == [int(w & np.uint64(1023)) for w in want]
    assert homes == [_interpreted(kernels.home)(k, 1023) for k in keys]


def test_slot_map_probes_equal_their_reference() -> None:
    keys = np.unique(_ids(300, 300))
    values = np.arange(len(keys), dtype=np.int64)
    mask = kernels.table_size(len(keys)) - 1

    def filled(put: Callable[..., int]) -> tuple[np.ndarray, int]:
        cells = np.full((mask + 1, 2), kernels.SLOT_EMPTY, dtype=np.int64)
        cells[::7] = (0, kernels.SLOT_TOMB)  # tombstones for the keys to reuse
        return cells, put(cells, mask, keys, values)

    cells, reused = filled(kernels.put)
    reference_cells, reference_reused = filled(_interpreted(kernels.put))
    np.testing.assert_array_equal(cells, reference_cells)
    assert reused == reference_reused > 0
    probe = np.concatenate([keys, _ids(50, 50)])
    found = kernels.find(cells, mask, probe)
    np.testing.assert_array_equal(found, _interpreted(kernels.find)(cells, mask, probe))
    assert cells[found[: len(keys)], 0].tolist() == keys.tolist()
    assert cells[found[: len(keys)], 1].tolist() == values.tolist()


@pytest.mark.parametrize(("n", "distinct", "cells"), [(400, 60, 256), (400, 400, 256)])
def test_grouping_equals_its_reference_and_numpy(n: int, distinct: int, cells: int) -> None:
    ids = _ids(n, distinct)
    got = kernels.group(ids, cells - 1)
    want = _interpreted(kernels.group)(ids, cells - 1)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    if 2 * distinct > cells:  # overflow: empty, for the caller to retry larger
        assert all(len(a) == 0 for a in got)
        return
    unique, inverse, order, starts = got
    first = np.unique(ids, return_index=True)[1]
    np.testing.assert_array_equal(unique, ids[np.sort(first)])
    np.testing.assert_array_equal(unique[inverse], ids)
    for u in range(len(unique)):
        np.testing.assert_array_equal(
            order[starts[u] : starts[u + 1]], np.flatnonzero(ids == unique[u])
        )


def test_row_uniforms_equal_their_reference() -> None:
    ids = _ids(40, 40)
    out = {}
    for name, kernel in (("compiled", kernels.uniforms), ("reference", None)):
        u1 = np.empty((len(ids), 9), np.float32)
        theta = np.empty_like(u1)
        with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as compiled
            (kernel or _interpreted(kernels.uniforms))(ids, 11, u1, theta)
        out[name] = (u1, theta)
    for a, b in zip(out["compiled"], out["reference"], strict=True):
        np.testing.assert_array_equal(a, b)
    u1, theta = out["compiled"]
    assert u1.min() > 0 and u1.max() < 1 and theta.min() > 0 and theta.max() < 2 * np.pi


def test_relu_dropout_pass_equals_numpy_bits() -> None:
    rows, cols = 13, 37  # a word of 64 elements wraps across rows
    words = RNG.integers(0, 2**64 - 1, size=(rows * cols + 63) // 64, dtype=np.uint64)
    bits = np.unpackbits(words.astype("<u8").view(np.uint8))[: rows * cols]
    k = RNG.integers(0, 64, size=64)
    assert [kernels.keep_bit(words[0], int(i)) for i in k] == bits[k].tolist()
    h = RNG.standard_normal(rows * cols).astype(np.float32)
    bias = RNG.standard_normal(cols).astype(np.float32)
    scale = np.float32(2.0)
    want = np.maximum(h.reshape(rows, cols) + bias, 0).reshape(-1) * (bits * scale)
    for kernel in (kernels.relu_keep, _interpreted(kernels.relu_keep)):
        got = h.copy()
        kernel(got, bias, words, scale)
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_every_kernel_is_pinned_here() -> None:
    tested = {"splitmix", "home", "find", "put", "group", "uniforms", "keep_bit", "relu_keep"}
    found = {name for name, obj in vars(kernels).items() if hasattr(obj, "py_func")}
    assert found - {"_finalize"} == tested


def test_without_a_writable_cache_directory_functions_still_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = numba.njit

    def read_only_image(*args: Any, cache: bool = False, **kwargs: Any) -> Any:
        if cache:  # what numba raises when no cache locator is writable
            raise RuntimeError("cannot cache function 'add': no locator available for file")
        return real(*args, cache=cache, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(numba, "njit", read_only_image)

    def add(a: int, b: int) -> int:
        return a + b

    fast = kernels.compiled(add)
    assert fast(2, 3) == 5
    assert _interpreted(fast) is add
