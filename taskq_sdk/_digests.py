"""Stable digests: of values by content (a call's arguments) and of functions by their code (a version).

Both are equal across processes, machines and kernel restarts for equal content, and differ when
the content does. Values: dicts and sets in a canonical order, numpy arrays and pandas objects by
content, the rest by a fallback (the wire encoding). Functions: bytecode, constants, defaults,
closure, and the plain values and same-module functions they read - not line numbers or file names::

    inputs_digest({"b": 2, "a": 1}) == inputs_digest({"a": 1, "b": 2})   # True
    code_version(score)                                                # '9b1c…' until score's code changes
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import functools
import hashlib
import inspect
import sys
import types
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["code_version", "inputs_digest", "qualname"]

#: how deep the version hash follows functions a function calls (same module only)
_MAX_DEPTH = 4


class _Unhashable(Exception):
    """A value the canonical walk has no rule for (the caller decides: wire bytes or its type name)."""


def _feed(h: Any, value: Any, fallback: Callable[[Any], bytes] | None, depth: int = 0) -> None:
    """Feed ``value`` into hash ``h`` canonically: dicts by sorted items, arrays and frames by content."""
    if depth > 200:
        raise _Unhashable("nested too deeply")
    if value is None or isinstance(value, bool):
        h.update(b"N" if value is None else (b"T" if value else b"F"))
    elif isinstance(value, int):
        h.update(b"i%d;" % value)
    elif isinstance(value, float):
        h.update(b"f" + repr(value).encode() + b";")
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        h.update(b"b%d:" % len(data) + data)
    elif isinstance(value, list | tuple):
        h.update((b"l" if isinstance(value, list) else b"t") + b"%d[" % len(value))
        for item in value:
            _feed(h, item, fallback, depth + 1)
        h.update(b"]")
    elif isinstance(value, dict):
        _feed_unordered(h, b"d", [(k, v) for k, v in value.items()], fallback, depth)
    elif isinstance(value, set | frozenset):
        _feed_unordered(h, b"S", [(v, None) for v in value], fallback, depth)
    elif isinstance(value, _dt.datetime | _dt.date | _dt.time):
        h.update(b"D" + type(value).__name__.encode() + value.isoformat().encode() + b";")
    elif isinstance(value, _dt.timedelta):
        h.update(b"dt%r;" % value.total_seconds())
    elif isinstance(value, uuid.UUID | decimal.Decimal):
        h.update(b"U" + type(value).__name__.encode() + str(value).encode() + b";")
    elif _feed_data(h, value, fallback, depth):
        pass
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(b"C" + qualname(type(value)).encode())
        _feed(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, fallback, depth + 1)
    elif callable(getattr(value, "model_dump", None)) and hasattr(type(value), "model_fields"):
        h.update(b"P" + qualname(type(value)).encode())
        _feed(h, value.model_dump(mode="json"), fallback, depth + 1)
    elif fallback is not None:
        data = fallback(value)
        h.update(b"W%d:" % len(data) + data)
    else:
        raise _Unhashable(type(value).__qualname__)


def _feed_unordered(h: Any, tag: bytes, pairs: list[tuple[Any, Any]], fallback: Any, depth: int) -> None:
    digests = []
    for k, v in pairs:
        sub = hashlib.sha256()
        _feed(sub, k, fallback, depth + 1)
        _feed(sub, v, fallback, depth + 1)
        digests.append(sub.digest())
    h.update(tag + b"%d{" % len(digests) + b"".join(sorted(digests)) + b"}")


def _feed_data(h: Any, value: Any, fallback: Any, depth: int) -> bool:
    """numpy arrays and scalars, pandas frames, series and indexes: fed by content; False for others."""
    module = type(value).__module__ or ""
    if module.startswith("numpy") and "numpy" in sys.modules:
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                h.update(b"A%s" % str(value.shape).encode())
                _feed(h, value.tolist(), fallback, depth + 1)
            else:
                h.update(b"A" + value.dtype.str.encode() + str(value.shape).encode())
                h.update(np.ascontiguousarray(value).tobytes())
            return True
        if isinstance(value, np.generic):
            h.update(b"a" + value.dtype.str.encode() + value.tobytes())
            return True
        return False
    if module.startswith("pandas") and "pandas" in sys.modules:
        import pandas as pd

        if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
            h.update(b"PD" + type(value).__name__.encode())
            if isinstance(value, pd.DataFrame):
                _feed(h, [str(c) for c in value.columns], fallback, depth + 1)
                _feed(h, [str(t) for t in value.dtypes], fallback, depth + 1)
            else:
                _feed(h, [str(value.name), str(value.dtype)], fallback, depth + 1)
            try:
                hashed = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index))
                h.update(hashed.to_numpy().tobytes())
            except TypeError:  # unhashable cells (lists, dicts): their wire form
                if fallback is None:
                    raise _Unhashable(type(value).__qualname__) from None
                data = fallback(value)
                h.update(b"W%d:" % len(data) + data)
            return True
    return False


def inputs_digest(value: Any, fallback: Callable[[Any], bytes] | None = None) -> str:
    """A stable hex digest of ``value``: equal for equal content, whatever the dict order or process.

    Dicts and sets are hashed in a canonical order, numpy arrays and pandas objects by content;
    values without a rule are hashed by ``fallback(value)`` (their wire encoding).

    Example::

        inputs_digest([(1, 2), {"b": 2, "a": 1}]) == inputs_digest([(1, 2), {"a": 1, "b": 2}])   # True
    """
    h = hashlib.sha256()
    _feed(h, value, fallback)
    return h.hexdigest()


def qualname(obj: Any) -> str:
    """``module.QualName`` of a function or class (what names it across processes)."""
    return f"{getattr(obj, '__module__', '') or ''}.{getattr(obj, '__qualname__', None) or type(obj).__qualname__}"


# ----------------------------------------------------------------------------- code versions
def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(b"K%d,%d,%d;" % (code.co_argcount, code.co_kwonlyargcount, code.co_flags))
    h.update(code.co_code)
    _feed(h, [code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars], None)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            _feed_soft(h, const)


def _feed_soft(h: Any, value: Any) -> None:
    """Feed a value a function holds (a default, a closure cell, a global it reads): by content if it
    has a canonical form, else by its type (an object without one must not make the version random)."""
    sub = hashlib.sha256()
    try:
        _feed(sub, value, None)
    except (_Unhashable, RecursionError, ValueError, TypeError):
        sub = hashlib.sha256(b"?" + qualname(type(value)).encode())
    h.update(sub.digest())


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _feed_callable(h: Any, fn: Any, seen: set[int], depth: int) -> None:
    fn = inspect.unwrap(fn)
    if id(fn) in seen:
        h.update(b"<seen>")
        return
    seen.add(id(fn))
    if isinstance(fn, functools.partial):
        h.update(b"partial")
        _feed_callable(h, fn.func, seen, depth)
        _feed_soft(h, list(fn.args))
        _feed_soft(h, dict(fn.keywords))
        return
    if isinstance(fn, types.MethodType):
        _feed_callable(h, fn.__func__, seen, depth)
        return
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        call = inspect.getattr_static(
            type(fn), "__call__", None
        )  # an instance with a __call__ method: that method's code
        h.update(qualname(fn if isinstance(fn, type) else type(fn)).encode())
        if isinstance(call, types.FunctionType):
            _feed_callable(h, call, seen, depth)
        return
    _feed_code(h, code)
    _feed_soft(h, getattr(fn, "__defaults__", None) or ())
    _feed_soft(h, getattr(fn, "__kwdefaults__", None) or {})
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            content = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(content, types.FunctionType) and depth < _MAX_DEPTH:
            _feed_callable(h, content, seen, depth + 1)
        else:
            _feed_soft(h, content)
    module = getattr(fn, "__module__", None)
    scope = getattr(fn, "__globals__", {})
    for name in sorted(_global_names(code)):
        if name not in scope:
            continue
        value = scope[name]
        if isinstance(value, types.FunctionType):
            # a helper defined next to it (same module, a notebook's cells) is part of its code
            if value.__module__ == module and depth < _MAX_DEPTH:
                h.update(b"g" + name.encode())
                _feed_callable(h, value, seen, depth + 1)
        elif isinstance(value, int | float | str | bytes | tuple | frozenset | bool) or value is None:
            h.update(b"g" + name.encode())
            _feed_soft(h, value)


def code_version(fn: Callable[..., Any]) -> str:
    """A hash of what ``fn`` computes with: bytecode, constants, defaults, closure, plain globals it reads.

    Line numbers and file names are left out, so it is equal across processes and kernel restarts
    for unchanged code, and changes when the function (or a same-module helper it calls) changes.

    Example::

        def f(x): return x * 2
        code_version(f)   # '9b1c…'; editing f's body gives another value
    """
    h = hashlib.sha256()
    _feed_callable(h, fn, set(), 0)
    return h.hexdigest()[:32]
