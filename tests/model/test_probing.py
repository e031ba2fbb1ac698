from __future__ import annotations

from typing import Any

import numba
import pytest

from model.probing import compiled


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

    fast = compiled(add)
    assert fast(2, 3) == 5
    assert fast.py_func is add  # type: ignore[attr-defined]  # a numba dispatcher
