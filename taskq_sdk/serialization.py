"""The safe wire format: msgpack with extension types, plus pickle only by explicit opt-in.

arq stores every job and result as bytes in Redis. By default it uses pickle, so anyone who can
write to Redis could run code in every worker and notebook. taskq replaces it with a :class:`Codec`
used on clients and workers alike::

    from datetime import datetime
    from taskq_sdk.serialization import default_codec
    codec = default_codec()
    data = codec.dumps({"when": datetime.now(), "ids": (1, 2)})
    codec.loads(data)        # {'when': datetime(...), 'ids': (1, 2)}

    # arq: Worker(functions, job_serializer=codec.serializer, job_deserializer=codec.deserializer)

Every payload starts with a 5-byte header ``b"\\xc1TQ" + bytes([WIRE_VERSION]) + format`` where the
format byte is ``b"m"`` (msgpack) or ``b"p"`` (pickle). ``0xc1`` is never a valid first byte of
msgpack (nor of a pickle), so bytes without the header are recognised and refused. A pickle is only
ever loaded by a ``Codec("pickle")`` (``TASKQ_SERIALIZER=pickle`` on clients *and* workers).

What travels exactly (type, value and, for arrays and frames, dtype and shape):

- ``None``, ``bool``, ``int`` (any size: beyond 64 bits via an extension), ``float`` (NaN, ±inf,
  -0.0), ``str``, ``bytes``, ``list``, ``dict`` (keys of any supported hashable type), ``tuple``,
  ``set``, ``frozenset``, ``complex``, ``Decimal``, ``UUID``, ``date``, ``timedelta``;
- ``datetime`` and ``time``, naive or aware, microseconds kept; the UTC offset is kept, but a
  named zone (``ZoneInfo("Europe/Paris")``) comes back as a fixed-offset ``timezone``, and
  ``fold`` is not kept;
- numpy arrays of any non-object dtype (incl. ``datetime64``/``timedelta64``, structured, 0-d and
  empty), and ``datetime64``/``timedelta64`` scalars;
- pandas ``DataFrame``, ``Series`` and ``Index`` (``RangeIndex``, ``MultiIndex``, duplicate
  labels, ``DatetimeIndex`` with its ``freq``) with numpy-dtype columns (sent as raw arrays),
  ``category`` (categories, codes, ordered), ``datetime64[..., tz]`` and the nullable / string
  extension dtypes (``Int64``, ``Float64``, ``boolean``, ``string``, ``str``; sent as lists);
- exceptions, as :class:`RemoteError` (type name, message, traceback text) -- never as the class;
  an exception with a ``remote_error`` attribute holding a :class:`RemoteError` travels as that
  error (how a worker passes an already-described failure through arq's result path).

What is converted on the way (documented loss):

- ``Enum`` / ``IntEnum`` / ``StrEnum`` members -> their ``.value``;
- subclasses of ``int``/``float``/``str``/``bytes``/``list``/``tuple``/``dict``/``set`` (e.g.
  ``OrderedDict``, ``defaultdict``, named tuples) -> the plain base type; ``bytearray`` and
  ``memoryview`` -> ``bytes``;
- ``pathlib`` paths -> ``str``;
- pydantic models -> ``model_dump(mode="python")`` dicts; dataclass instances -> dicts of their
  fields (like ``dataclasses.asdict``);
- numpy scalars -> Python scalars via ``.item()`` (except ``datetime64``/``timedelta64`` and
  scalars without a Python equivalent such as ``longdouble``, which stay numpy scalars);
  ``numpy.float64`` is a ``float``; ndarray subclasses (``np.matrix``, masked arrays) -> plain
  ``ndarray``; object arrays -> object arrays of the decoded elements; ``StringDType`` arrays ->
  object arrays of ``str``;
- pandas ``Timestamp`` -> ``datetime`` and ``Timedelta`` -> ``timedelta`` (nanoseconds dropped);
  ``pd.NaT`` and ``pd.NA`` met as scalars -> ``None`` (inside datetime columns NaT stays NaT);
  ``attrs``/``flags`` of frames are not kept; extension dtypes other than the above travel as
  lists of their scalars, and fail if those scalars are unsupported (e.g. ``Period``).

Limits: tuples, sets, arrays, frames and errors nest at most :data:`MAX_EXT_DEPTH` (12) levels
inside one another (lists and dicts do not count, and nest up to msgpack's 1024 levels); deeper
data is refused with :class:`SerializationError` on encode and :class:`DeserializationError` on
decode, because decoding it could overflow the C stack. Reference cycles are refused, naming the path.

Decoding a numpy or pandas value where that library is missing raises :class:`DeserializationError`
saying ``pip install "taskq-sdk[pandas]"``. Nothing here imports numpy or pandas: they are only
used once such an object is met.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import gc
import io
import pathlib
import pickle
import struct
import sys
import traceback as _traceback_module
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final, Literal

import msgpack

from .errors import ConfigurationError, DeserializationError, SerializationError

__all__ = [
    "EXT_CODES",
    "FORMAT_MSGPACK",
    "FORMAT_PICKLE",
    "HEADER_SIZE",
    "JOB_FIELD_NAMES",
    "MAGIC",
    "MAX_EXT_DEPTH",
    "TRACEBACK_LIMIT",
    "WIRE_VERSION",
    "Codec",
    "RemoteError",
    "codec_for",
    "default_codec",
]

# ----------------------------------------------------------------------------------------- envelope

WIRE_VERSION: Final = 1
MAGIC: Final = b"\xc1TQ"
FORMAT_MSGPACK: Final = b"m"
FORMAT_PICKLE: Final = b"p"
HEADER_SIZE: Final = 5
_HEADER_MSGPACK: Final = MAGIC + bytes([WIRE_VERSION]) + FORMAT_MSGPACK
_HEADER_PICKLE: Final = MAGIC + bytes([WIRE_VERSION]) + FORMAT_PICKLE

#: How the keys of an arq job/result dict are named in error messages (``args[1]['model']``).
JOB_FIELD_NAMES: Final[Mapping[str, str]] = {"a": "args", "k": "kwargs", "r": "result"}

_PICKLE_REFUSED: Final = (
    "refused to load a pickle payload: taskq never unpickles unless TASKQ_SERIALIZER=pickle "
    "is set on both clients and workers"
)
_ENCODE_HINT: Final = (
    "pass plain data (dict/list/str/numbers, datetime, numpy, pandas, pydantic models), "
    "or opt into pickle with TASKQ_SERIALIZER=pickle on clients and workers"
)
_PANDAS_FIX: Final = 'pip install "taskq-sdk[pandas]"'

# Initial buffer of each msgpack Packer. Keep it well under glibc's mmap threshold (128 KiB):
# msgpack's default of 256 KiB makes every packb (and every nested one) mmap + munmap, ~10x slower.
_BUF_SIZE: Final = 16 * 1024
# Inputs at least this long are unpacked through a memoryview rather than a copy of the body.
_MEMORYVIEW_FROM: Final = 64 * 1024
# RemoteError.traceback keeps at most this many characters (the tail).
TRACEBACK_LIMIT: Final = 32 * 1024

# ------------------------------------------------------------------------------------ ext type codes

EXT_TUPLE: Final = 1
EXT_SET: Final = 2
EXT_FROZENSET: Final = 3
EXT_COMPLEX: Final = 4
EXT_DECIMAL: Final = 5
EXT_UUID: Final = 6
EXT_DATETIME: Final = 7
EXT_DATE: Final = 8
EXT_TIME: Final = 9
EXT_TIMEDELTA: Final = 10
EXT_BIGINT: Final = 11
EXT_REMOTE_ERROR: Final = 12
EXT_NDARRAY: Final = 20
EXT_NDARRAY_OBJECT: Final = 21
EXT_NUMPY_SCALAR: Final = 22
EXT_DATAFRAME: Final = 30
EXT_SERIES: Final = 31
EXT_INDEX: Final = 32
EXT_PANDAS_ARRAY: Final = 33

#: msgpack extension type code -> what it carries (codes 0-127 are free for applications).
EXT_CODES: Final[Mapping[int, str]] = {
    EXT_TUPLE: "tuple: packed list",
    EXT_SET: "set: packed list",
    EXT_FROZENSET: "frozenset: packed list",
    EXT_COMPLEX: "complex: struct '<dd' (real, imag)",
    EXT_DECIMAL: "decimal.Decimal: str() as ASCII",
    EXT_UUID: "uuid.UUID: 16 raw bytes",
    EXT_DATETIME: "datetime.datetime: isoformat() (offset kept)",
    EXT_DATE: "datetime.date: isoformat()",
    EXT_TIME: "datetime.time: isoformat() (offset kept)",
    EXT_TIMEDELTA: "datetime.timedelta: struct '<iii' (days, seconds, microseconds)",
    EXT_BIGINT: "int beyond 64 bits: big-endian two's-complement bytes",
    EXT_REMOTE_ERROR: "RemoteError: packed [type, message, traceback, kind, details]",
    EXT_NDARRAY: "numpy.ndarray: packed [dtype descr, shape, C-order raw bytes]",
    EXT_NDARRAY_OBJECT: "numpy.ndarray of dtype object: packed [shape, flat list of elements]",
    EXT_NUMPY_SCALAR: "numpy scalar (datetime64, timedelta64, longdouble...): packed [descr, raw bytes]",
    EXT_DATAFRAME: "pandas.DataFrame: packed [columns index, index, [column values]]",
    EXT_SERIES: "pandas.Series: packed [values, index, name]",
    EXT_INDEX: "pandas.Index (incl. RangeIndex, MultiIndex): packed index description",
    EXT_PANDAS_ARRAY: "pandas ExtensionArray (Categorical, IntegerArray...): packed values",
}

_PACKABLE: Final = frozenset({msgpack.ExtType, dict, list, str, bytes, float, bool, type(None)})
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_COMPLEX = struct.Struct("<dd")
_TIMEDELTA = struct.Struct("<iii")
_NOT_HANDLED: Final = object()

_Packer = msgpack.Packer
_ExtType = msgpack.ExtType
_unpackb = msgpack.unpackb


def _type_name(cls: type) -> str:
    """``ValueError`` for builtins, else ``module.QualName``."""
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    if not module or module == "builtins":
        return str(qualname)
    return f"{module}.{qualname}"


def _short_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{_type_name(type(value))} object>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------- RemoteError


@dataclasses.dataclass(frozen=True)
class RemoteError:
    """An exception raised elsewhere (on a worker), as plain data: type name, message, traceback.

    Decoding never re-creates the original exception class (that would import arbitrary modules);
    it always yields a ``RemoteError``.

    Example::

        try:
            1 / 0
        except ZeroDivisionError as exc:
            err = RemoteError.from_exception(exc)
        str(err)            # 'ZeroDivisionError: division by zero'
        err.traceback       # 'Traceback (most recent call last): ...'
    """

    type: str
    message: str
    traceback: str
    kind: str = "error"
    details: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    @classmethod
    def from_exception(cls, exc: BaseException, *, kind: str = "error", traceback: str | None = None) -> RemoteError:
        """Describe ``exc``: qualified type name, ``str(exc)``, formatted traceback (tail, ~32 KiB).

        ``details`` holds ``args`` (capped reprs), ``status`` when the exception has an int
        ``status``/``status_code``, ``errno`` when set, and ``notes`` (``add_note``).

        Example::

            err = RemoteError.from_exception(TimeoutError("read timed out"), kind="timeout")
            err.type, err.message, err.details.get("status")
        """
        name = _type_name(type(exc))
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {name} object>"
        if traceback is None:
            try:
                traceback = "".join(_traceback_module.format_exception(exc))
            except Exception:
                traceback = ""
        return cls(
            type=name,
            message=message,
            traceback=_cap_traceback(traceback),
            kind=kind,
            details=_exception_details(exc),
        )

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


def _cap_traceback(text: str) -> str:
    if len(text) <= TRACEBACK_LIMIT:
        return text
    dropped = len(text) - TRACEBACK_LIMIT
    return f"[... {dropped} characters of traceback dropped ...]\n" + text[-TRACEBACK_LIMIT:]


def _exception_details(exc: BaseException) -> dict[str, Any]:
    details: dict[str, Any] = {}
    try:
        args = exc.args
    except Exception:
        args = ()
    if isinstance(args, tuple):
        details["args"] = [_short_repr(a, 200) for a in args[:8]]
    for attr in ("status", "status_code"):
        try:
            value = getattr(exc, attr, None)
        except Exception:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            details["status"] = int(value)
            break
    errno = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if isinstance(errno, int):
        details["errno"] = int(errno)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and notes:
        details["notes"] = [str(n)[:1000] for n in notes[:10]]
    return details


def _remote_error_of(exc: BaseException) -> RemoteError:
    """How an exception travels: the :class:`RemoteError` it carries (``exc.remote_error``), else its description."""
    carried = getattr(exc, "remote_error", None)
    if isinstance(carried, RemoteError):
        return carried
    return RemoteError.from_exception(exc)


def _rebuild_remote_error(type_: str, message: str, traceback: str, kind: str, details: dict[str, Any]) -> RemoteError:
    return RemoteError(type=type_, message=message, traceback=traceback, kind=kind, details=details)


# ------------------------------------------------------------------------------------------ encoding


# Tuples, sets, arrays, frames and errors are packed into their extension's bytes by a nested
# packer (msgpack packers cannot be re-entered). Each nesting level gets its own ``default`` hook
# (built by _build_defaults) so the depth is known without any shared state, and payloads nest at
# most MAX_EXT_DEPTH extensions deep: msgpack's unpackb keeps a large context on the C stack, so a
# deeper payload could overflow the stack of a thread when decoded (a crash, not an exception).
Nested = Callable[[Any], bytes]
MAX_EXT_DEPTH: Final = 12


def _enc_tuple(obj: tuple[Any, ...], nested: Nested) -> Any:
    return _ExtType(EXT_TUPLE, nested(list(obj)))


def _enc_set(obj: set[Any], nested: Nested) -> Any:
    return _ExtType(EXT_SET, nested(list(obj)))


def _enc_frozenset(obj: frozenset[Any], nested: Nested) -> Any:
    return _ExtType(EXT_FROZENSET, nested(list(obj)))


def _enc_complex(obj: complex, nested: Nested) -> Any:
    return _ExtType(EXT_COMPLEX, _COMPLEX.pack(obj.real, obj.imag))


def _enc_decimal(obj: Decimal, nested: Nested) -> Any:
    return _ExtType(EXT_DECIMAL, str(obj).encode("ascii"))


def _enc_uuid(obj: uuid.UUID, nested: Nested) -> Any:
    return _ExtType(EXT_UUID, obj.bytes)


def _enc_datetime(obj: _dt.datetime, nested: Nested) -> Any:
    return _ExtType(EXT_DATETIME, obj.isoformat().encode("ascii"))


def _enc_date(obj: _dt.date, nested: Nested) -> Any:
    return _ExtType(EXT_DATE, obj.isoformat().encode("ascii"))


def _enc_time(obj: _dt.time, nested: Nested) -> Any:
    return _ExtType(EXT_TIME, obj.isoformat().encode("ascii"))


def _enc_timedelta(obj: _dt.timedelta, nested: Nested) -> Any:
    return _ExtType(EXT_TIMEDELTA, _TIMEDELTA.pack(obj.days, obj.seconds, obj.microseconds))


def _enc_int(obj: int, nested: Nested) -> Any:
    # only called by msgpack for ints that do not fit in 64 bits
    n = int.__int__(obj)
    return _ExtType(EXT_BIGINT, n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True))


def _enc_remote_error(obj: RemoteError, nested: Nested) -> Any:
    payload = [obj.type, obj.message, obj.traceback, obj.kind, obj.details]
    return _ExtType(EXT_REMOTE_ERROR, nested(payload))


def _enc_path(obj: pathlib.PurePath, nested: Nested) -> str:
    return str(obj)


def _plain_datetime(obj: _dt.datetime, nested: Nested) -> Any:
    plain = _dt.datetime(
        obj.year,
        obj.month,
        obj.day,
        obj.hour,
        obj.minute,
        obj.second,
        obj.microsecond,
        obj.tzinfo,
        fold=obj.fold,
    )
    return _enc_datetime(plain, nested)


def _plain_date(obj: _dt.date, nested: Nested) -> Any:
    return _enc_date(_dt.date(obj.year, obj.month, obj.day), nested)


def _plain_time(obj: _dt.time, nested: Nested) -> Any:
    plain = _dt.time(obj.hour, obj.minute, obj.second, obj.microsecond, obj.tzinfo, fold=obj.fold)
    return _enc_time(plain, nested)


def _plain_timedelta(obj: _dt.timedelta, nested: Nested) -> Any:
    plain = _dt.timedelta(days=obj.days, seconds=obj.seconds, microseconds=obj.microseconds)
    return _enc_timedelta(plain, nested)


def _plain_memoryview(obj: memoryview, nested: Nested) -> bytes:
    return obj.tobytes()


def _plain_bytes(obj: Any, nested: Nested) -> bytes:
    return bytes(obj)


# Exact types msgpack does not pack by itself (strict_types=True sends subclasses here as well).
_ENCODERS: dict[type, Callable[[Any, Nested], Any]] = {
    tuple: _enc_tuple,
    set: _enc_set,
    frozenset: _enc_frozenset,
    complex: _enc_complex,
    Decimal: _enc_decimal,
    uuid.UUID: _enc_uuid,
    _dt.datetime: _enc_datetime,
    _dt.date: _enc_date,
    _dt.time: _enc_time,
    _dt.timedelta: _enc_timedelta,
    int: _enc_int,
    bytearray: _plain_bytes,
    memoryview: _plain_memoryview,
    RemoteError: _enc_remote_error,
    pathlib.PurePosixPath: _enc_path,
    pathlib.PureWindowsPath: _enc_path,
    pathlib.PosixPath: _enc_path,
    pathlib.WindowsPath: _enc_path,
}

# Subclasses of supported types -> the plain base type (first match wins; datetime before date).
_SUBCLASS_ENCODERS: tuple[tuple[type, Callable[[Any, Nested], Any]], ...] = (
    (int, lambda obj, nested: int.__int__(obj)),
    (float, lambda obj, nested: float.__float__(obj)),
    (str, lambda obj, nested: str.__str__(obj)),
    (bytes, _plain_bytes),
    (bytearray, _plain_bytes),
    (memoryview, _plain_memoryview),
    (dict, lambda obj, nested: dict(obj)),
    (list, lambda obj, nested: list(obj)),
    (tuple, _enc_tuple),
    (frozenset, _enc_frozenset),
    (set, _enc_set),
    (complex, lambda obj, nested: _enc_complex(complex(obj), nested)),
    (_dt.datetime, _plain_datetime),
    (_dt.date, _plain_date),
    (_dt.time, _plain_time),
    (_dt.timedelta, _plain_timedelta),
    (Decimal, lambda obj, nested: _enc_decimal(Decimal(obj), nested)),
    (uuid.UUID, lambda obj, nested: _enc_uuid(uuid.UUID(bytes=obj.bytes), nested)),
    (pathlib.PurePath, _enc_path),
)


def _build_defaults() -> list[Callable[[Any], Any]]:
    """msgpack ``default`` hooks, one per extension nesting level (index 0: the outer packer)."""
    hooks: list[Callable[[Any], Any]] = []

    def make(depth: int) -> Callable[[Any], Any]:
        def nested(obj: Any) -> bytes:
            if depth >= MAX_EXT_DEPTH:
                raise ValueError(
                    f"values are nested more than {MAX_EXT_DEPTH} levels deep in tuples, sets, arrays, frames or errors"
                )
            # a fresh Packer: the outer one is in the middle of packing and must not be re-entered
            data: bytes = _Packer(default=hooks[depth + 1], strict_types=True, buf_size=_BUF_SIZE).pack(obj)
            return data

        def default(obj: Any) -> Any:
            """Turn one object msgpack cannot pack by itself into something it can."""
            # msgpack does not call ``default`` again on what it returns, so a conversion whose
            # result still needs one (an Enum whose value is a tuple, an int subclass beyond 64
            # bits...) is settled here
            for _ in range(8):
                encoder = _ENCODERS.get(type(obj))
                obj = encoder(obj, nested) if encoder is not None else _default_slow(obj, nested)
                cls = type(obj)
                if cls in _PACKABLE or (cls is int and _INT_MIN <= obj <= _INT_MAX):
                    return obj
            raise TypeError(f"cannot serialize an object of type {_type_name(type(obj))}")

        return default

    hooks.extend(make(depth) for depth in range(MAX_EXT_DEPTH + 1))
    return hooks


def _default_slow(obj: Any, nested: Nested) -> Any:
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    if module.startswith("numpy"):
        result = _encode_numpy(obj, nested)
        if result is not _NOT_HANDLED:
            return result
    elif module.startswith("pandas"):
        result = _encode_pandas(obj, nested)
        if result is not _NOT_HANDLED:
            return result
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, BaseException):
        return _enc_remote_error(_remote_error_of(obj), nested)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="python")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    for base, encoder in _SUBCLASS_ENCODERS:
        if isinstance(obj, base):
            return encoder(obj, nested)
    raise TypeError(f"cannot serialize an object of type {_type_name(cls)}")


_DEFAULTS: Final = _build_defaults()
_default: Final = _DEFAULTS[0]


# --------------------------------------------------------------------------------------------- numpy


def _encode_numpy(obj: Any, nested: Nested) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return _encode_ndarray(np, obj, nested)
    if isinstance(obj, np.generic):
        if not isinstance(obj, np.datetime64 | np.timedelta64):
            value = obj.item()
            if not isinstance(value, np.generic):
                return value
        descr = np.lib.format.dtype_to_descr(obj.dtype)
        return _ExtType(EXT_NUMPY_SCALAR, nested([descr, obj.tobytes()]))
    return _NOT_HANDLED


def _encode_ndarray(np: Any, arr: Any, nested: Nested) -> Any:
    if type(arr) is not np.ndarray:
        arr = np.asarray(arr)
    dtype = arr.dtype
    if dtype.kind == "T":  # numpy 2 StringDType: travels as an object array of str
        arr = arr.astype(object)
        dtype = arr.dtype
    shape = list(arr.shape)
    if dtype.hasobject:
        if dtype != np.dtype(object):
            raise TypeError(f"cannot serialize a numpy array of structured dtype {dtype} with object fields")
        return _ExtType(EXT_NDARRAY_OBJECT, nested([shape, arr.ravel(order="C").tolist()]))
    descr = np.lib.format.dtype_to_descr(dtype)
    raw: Any
    if arr.flags.c_contiguous and dtype.itemsize > 0:
        # zero-copy view of the array's memory; msgpack packs a memoryview as bin
        raw = memoryview(arr.reshape(-1).view(np.uint8))
    else:
        raw = arr.tobytes(order="C")
    return _ExtType(EXT_NDARRAY, nested([descr, shape, raw]))


# -------------------------------------------------------------------------------------------- pandas


def _encode_pandas(obj: Any, nested: Nested) -> Any:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        columns = [_pd_values_payload(obj.iloc[:, i]) for i in range(obj.shape[1])]
        payload = [_pd_index_payload(obj.columns), _pd_index_payload(obj.index), columns]
        return _ExtType(EXT_DATAFRAME, nested(payload))
    if isinstance(obj, pd.Series):
        payload = [_pd_values_payload(obj), _pd_index_payload(obj.index), obj.name]
        return _ExtType(EXT_SERIES, nested(payload))
    if isinstance(obj, pd.Index):
        return _ExtType(EXT_INDEX, nested(_pd_index_payload(obj)))
    if isinstance(obj, pd.api.extensions.ExtensionArray):
        return _ExtType(EXT_PANDAS_ARRAY, nested(_pd_values_payload(obj)))
    if obj is pd.NaT or obj is pd.NA:
        return None
    return _NOT_HANDLED  # Timestamp / Timedelta continue as datetime / timedelta subclasses


def _pd_index_payload(idx: Any) -> list[Any]:
    import pandas as pd

    if isinstance(idx, pd.RangeIndex):
        return ["range", idx.start, idx.stop, idx.step, idx.name]
    if isinstance(idx, pd.MultiIndex):
        levels = [_pd_index_payload(level) for level in idx.levels]
        codes = [_as_ndarray(c) for c in idx.codes]
        return ["multi", levels, codes, list(idx.names)]
    freq = None
    if isinstance(idx, pd.DatetimeIndex | pd.TimedeltaIndex):
        freq = idx.freqstr
    return ["index", _pd_values_payload(idx), idx.name, freq]


def _as_ndarray(values: Any) -> Any:
    import numpy as np

    return np.asarray(values)


def _pd_values_payload(values: Any) -> list[Any]:
    """The values of a Series, Index or ExtensionArray as ``[kind, ...]``."""
    import numpy as np
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        return ["np", np.asarray(values)]
    arr = values if isinstance(values, pd.api.extensions.ExtensionArray) else values.array
    if isinstance(dtype, pd.CategoricalDtype):
        return ["cat", _pd_index_payload(arr.categories), np.asarray(arr.codes), bool(arr.ordered)]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return ["dttz", _tz_spec(dtype.tz), np.asarray(arr.tz_convert(None))]
    return ["ext", str(dtype), arr.to_numpy(dtype=object).tolist()]


def _tz_spec(tz: Any) -> Any:
    if isinstance(tz, _dt.timezone):
        offset = tz.utcoffset(None)
        return int(offset.total_seconds()) if offset is not None else 0
    name = getattr(tz, "key", None) or getattr(tz, "zone", None) or str(tz)
    return str(name)


# ------------------------------------------------------------------------------------------ decoding


# Decoding mirrors encoding: one ext hook per nesting level, each decoder gets the ``unpack`` of the
# next level, and the last level refuses to go deeper (instead of overflowing the C stack).
Unnest = Callable[[bytes], Any]


def _build_ext_hooks() -> list[Callable[[int, bytes], Any]]:
    hooks: list[Callable[[int, bytes], Any]] = []

    def make(depth: int) -> Callable[[int, bytes], Any]:
        def unpack(data: bytes) -> Any:
            if depth >= MAX_EXT_DEPTH:
                raise DeserializationError(
                    f"corrupt taskq payload: extensions nested more than {MAX_EXT_DEPTH} levels deep"
                )
            return _unpackb(data, ext_hook=hooks[depth + 1], strict_map_key=False)

        def ext_hook(code: int, data: bytes) -> Any:
            decoder = _DECODERS.get(code)
            if decoder is None:
                raise DeserializationError(
                    f"the payload contains msgpack extension type {code}, which this taskq_sdk does not "
                    "know: it was probably written by a newer taskq_sdk; upgrade taskq_sdk on this side "
                    "(rolling deploys: upgrade workers and clients together)"
                )
            return decoder(data, unpack)

        return ext_hook

    hooks.extend(make(depth) for depth in range(MAX_EXT_DEPTH + 1))
    return hooks


def _unpack_list(data: bytes, unpack: Unnest, what: str, length: int | None = None) -> list[Any]:
    value = unpack(data)
    if type(value) is not list or (length is not None and len(value) != length):
        raise DeserializationError(f"corrupt taskq payload: malformed {what}")
    return value


def _dec_tuple(data: bytes, unpack: Unnest) -> tuple[Any, ...]:
    return tuple(_unpack_list(data, unpack, "tuple"))


def _dec_set(data: bytes, unpack: Unnest) -> set[Any]:
    return set(_unpack_list(data, unpack, "set"))


def _dec_frozenset(data: bytes, unpack: Unnest) -> frozenset[Any]:
    return frozenset(_unpack_list(data, unpack, "frozenset"))


def _dec_complex(data: bytes, unpack: Unnest) -> complex:
    real, imag = _COMPLEX.unpack(data)
    return complex(real, imag)


def _dec_decimal(data: bytes, unpack: Unnest) -> Decimal:
    return Decimal(data.decode("ascii"))


def _dec_uuid(data: bytes, unpack: Unnest) -> uuid.UUID:
    return uuid.UUID(bytes=data)


def _dec_datetime(data: bytes, unpack: Unnest) -> _dt.datetime:
    return _dt.datetime.fromisoformat(data.decode("ascii"))


def _dec_date(data: bytes, unpack: Unnest) -> _dt.date:
    return _dt.date.fromisoformat(data.decode("ascii"))


def _dec_time(data: bytes, unpack: Unnest) -> _dt.time:
    return _dt.time.fromisoformat(data.decode("ascii"))


def _dec_timedelta(data: bytes, unpack: Unnest) -> _dt.timedelta:
    days, seconds, microseconds = _TIMEDELTA.unpack(data)
    return _dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)


def _dec_bigint(data: bytes, unpack: Unnest) -> int:
    return int.from_bytes(data, "big", signed=True)


def _dec_remote_error(data: bytes, unpack: Unnest) -> RemoteError:
    type_, message, traceback, kind, details = _unpack_list(data, unpack, "RemoteError", 5)
    texts_ok = all(isinstance(v, str) for v in (type_, message, traceback, kind))
    if not texts_ok or not isinstance(details, dict):
        raise DeserializationError("corrupt taskq payload: malformed RemoteError")
    return RemoteError(type=type_, message=message, traceback=traceback, kind=kind, details=details)


def _require_numpy(what: str) -> Any:
    try:
        import numpy
    except ImportError as exc:
        raise DeserializationError(
            f"the payload contains {what}, but numpy is not installed here: {_PANDAS_FIX}"
        ) from exc
    return numpy


def _require_pandas(what: str) -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise DeserializationError(
            f"the payload contains {what}, but pandas is not installed here: {_PANDAS_FIX}"
        ) from exc
    return pandas


def _safe_dtype(np: Any, descr: Any) -> Any:
    dtype = np.lib.format.descr_to_dtype(descr)
    if dtype.hasobject:
        raise DeserializationError("corrupt taskq payload: raw numpy data with an object dtype")
    return dtype


def _check_shape(shape: Any) -> tuple[int, ...]:
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise DeserializationError("corrupt taskq payload: malformed numpy shape")
    return tuple(shape)


def _dec_ndarray(data: bytes, unpack: Unnest) -> Any:
    np = _require_numpy("a numpy array")
    descr, shape_list, raw = _unpack_list(data, unpack, "numpy array", 3)
    dtype = _safe_dtype(np, descr)
    shape = _check_shape(shape_list)
    count = 1
    for n in shape:
        count *= n
    if not isinstance(raw, bytes) or count * dtype.itemsize != len(raw):
        raise DeserializationError("corrupt taskq payload: numpy array data does not match its shape")
    if not raw:
        return np.zeros(shape, dtype=dtype)
    # bytearray: a writeable copy (an array over the payload's bytes would be read-only)
    return np.frombuffer(bytearray(raw), dtype=dtype, count=count).reshape(shape)


def _dec_ndarray_object(data: bytes, unpack: Unnest) -> Any:
    np = _require_numpy("a numpy array")
    shape_list, items = _unpack_list(data, unpack, "numpy object array", 2)
    shape = _check_shape(shape_list)
    count = 1
    for n in shape:
        count *= n
    if type(items) is not list or len(items) != count:
        raise DeserializationError("corrupt taskq payload: numpy object array does not match its shape")
    arr = np.empty(count, dtype=object)
    for i, item in enumerate(items):  # element-wise: a list element must stay one element
        arr[i] = item
    return arr.reshape(shape)


def _dec_numpy_scalar(data: bytes, unpack: Unnest) -> Any:
    np = _require_numpy("a numpy scalar")
    descr, raw = _unpack_list(data, unpack, "numpy scalar", 2)
    dtype = _safe_dtype(np, descr)
    if not isinstance(raw, bytes) or len(raw) != dtype.itemsize or not raw:
        raise DeserializationError("corrupt taskq payload: malformed numpy scalar")
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


def _dec_dataframe(data: bytes, unpack: Unnest) -> Any:
    pd = _require_pandas("a pandas DataFrame")
    columns_p, index_p, values_p = _unpack_list(data, unpack, "DataFrame", 3)
    columns = _pd_restore_index(pd, columns_p)
    index = _pd_restore_index(pd, index_p)
    if type(values_p) is not list or len(values_p) != len(columns):
        raise DeserializationError("corrupt taskq payload: DataFrame columns do not match their labels")
    if not values_p:
        frame = pd.DataFrame(index=index)
        frame.columns = columns
        return frame
    series = {i: _pd_series(pd, _pd_restore_values(pd, p), None, None) for i, p in enumerate(values_p)}
    frame = pd.DataFrame(series, copy=False)
    frame.index = index
    frame.columns = columns
    return frame


def _dec_series(data: bytes, unpack: Unnest) -> Any:
    pd = _require_pandas("a pandas Series")
    values_p, index_p, name = _unpack_list(data, unpack, "Series", 3)
    return _pd_series(pd, _pd_restore_values(pd, values_p), _pd_restore_index(pd, index_p), name)


def _dec_index(data: bytes, unpack: Unnest) -> Any:
    pd = _require_pandas("a pandas Index")
    return _pd_restore_index(pd, unpack(data))


def _dec_pandas_array(data: bytes, unpack: Unnest) -> Any:
    pd = _require_pandas("a pandas array")
    values = _pd_restore_values(pd, unpack(data))
    if type(values).__name__ == "ndarray":
        return pd.array(values, dtype=values.dtype)
    return values


def _pd_series(pd: Any, values: Any, index: Any, name: Any) -> Any:
    dtype = getattr(values, "dtype", None) if type(values).__name__ == "ndarray" else None
    return pd.Series(values, index=index, name=name, dtype=dtype, copy=False)


def _pd_restore_index(pd: Any, payload: Any) -> Any:
    if type(payload) is not list or not payload:
        raise DeserializationError("corrupt taskq payload: malformed pandas index")
    kind = payload[0]
    if kind == "range" and len(payload) == 5:
        _, start, stop, step, name = payload
        if not all(type(v) is int for v in (start, stop, step)):
            raise DeserializationError("corrupt taskq payload: malformed RangeIndex")
        return pd.RangeIndex(start, stop, step, name=name)
    if kind == "multi" and len(payload) == 4:
        _, levels_p, codes, names = payload
        if type(levels_p) is not list or type(codes) is not list:
            raise DeserializationError("corrupt taskq payload: malformed MultiIndex")
        levels = [_pd_restore_index(pd, p) for p in levels_p]
        return pd.MultiIndex(levels=levels, codes=codes, names=names, verify_integrity=True)
    if kind == "index" and len(payload) == 4:
        _, values_p, name, freq = payload
        values = _pd_restore_values(pd, values_p)
        if type(values).__name__ == "ndarray":
            index = pd.Index(values, dtype=values.dtype, name=name, copy=False)
        else:
            index = pd.Index(values, name=name)
        if isinstance(freq, str):
            if isinstance(index, pd.DatetimeIndex):
                index = pd.DatetimeIndex(index, freq=freq, name=name)
            elif isinstance(index, pd.TimedeltaIndex):
                index = pd.TimedeltaIndex(index, freq=freq, name=name)
        return index
    raise DeserializationError(f"corrupt taskq payload: unknown pandas index kind {_short_repr(kind)}")


def _pd_restore_values(pd: Any, payload: Any) -> Any:
    if type(payload) is not list or not payload:
        raise DeserializationError("corrupt taskq payload: malformed pandas values")
    kind = payload[0]
    if kind == "np" and len(payload) == 2:
        values = payload[1]
        if type(values).__name__ != "ndarray":
            raise DeserializationError("corrupt taskq payload: malformed pandas values")
        return values
    if kind == "cat" and len(payload) == 4:
        _, categories_p, codes, ordered = payload
        categories = _pd_restore_index(pd, categories_p)
        return pd.Categorical.from_codes(codes, categories=categories, ordered=bool(ordered))
    if kind == "dttz" and len(payload) == 3:
        _, tz_spec, naive_utc = payload
        tz: Any = _dt.timezone(_dt.timedelta(seconds=tz_spec)) if type(tz_spec) is int else str(tz_spec)
        return pd.DatetimeIndex(naive_utc).tz_localize("UTC").tz_convert(tz).array
    if kind == "ext" and len(payload) == 3:
        _, dtype_name, items = payload
        if not isinstance(dtype_name, str) or type(items) is not list:
            raise DeserializationError("corrupt taskq payload: malformed pandas values")
        return pd.array(items, dtype=pd.api.types.pandas_dtype(dtype_name))
    raise DeserializationError(f"corrupt taskq payload: unknown pandas values kind {_short_repr(kind)}")


_DECODERS: dict[int, Callable[[bytes, Unnest], Any]] = {
    EXT_TUPLE: _dec_tuple,
    EXT_SET: _dec_set,
    EXT_FROZENSET: _dec_frozenset,
    EXT_COMPLEX: _dec_complex,
    EXT_DECIMAL: _dec_decimal,
    EXT_UUID: _dec_uuid,
    EXT_DATETIME: _dec_datetime,
    EXT_DATE: _dec_date,
    EXT_TIME: _dec_time,
    EXT_TIMEDELTA: _dec_timedelta,
    EXT_BIGINT: _dec_bigint,
    EXT_REMOTE_ERROR: _dec_remote_error,
    EXT_NDARRAY: _dec_ndarray,
    EXT_NDARRAY_OBJECT: _dec_ndarray_object,
    EXT_NUMPY_SCALAR: _dec_numpy_scalar,
    EXT_DATAFRAME: _dec_dataframe,
    EXT_SERIES: _dec_series,
    EXT_INDEX: _dec_index,
    EXT_PANDAS_ARRAY: _dec_pandas_array,
}
_EXT_HOOKS: Final = _build_ext_hooks()
_ext_hook: Final = _EXT_HOOKS[0]


# ------------------------------------------------------------------------- explaining encode errors


@dataclasses.dataclass
class _Problem:
    path: str
    obj: Any
    reason: str  # "unsupported", "cycle", "deep", "deep_ext", "text", "error"
    detail: str = ""


_SCALARS: Final = frozenset({int, float, bool, type(None), bytes, bytearray, complex, Decimal, uuid.UUID})
# msgpack refuses anything nested deeper than this inside one packer; tuples and other
# extensions are packed by a fresh packer, so the count starts again below them
_MSGPACK_DEPTH: Final = 1024
_EXIT: Final = object()

# One step of the walk: (object, path, msgpack depth, extension depth). An (_EXIT, key) entry
# closes a container (for cycle detection).
_Step = tuple[Any, str, int, int]
_Expanded = tuple[int | None, list[_Step]]


class _PathFinder:
    """Walks an object that failed to encode and reports the first part that cannot be encoded.

    The walk is iterative (no recursion limit) and follows the encoder: containers are entered,
    converted objects (dataclasses, models, enums, object arrays...) are walked as what they become.
    """

    def __init__(self) -> None:
        self.active: dict[int, str] = {}

    def find(self, root: Any, path: str, depth: int = 0, ext: int = 0) -> _Problem | None:
        stack: list[Any] = [(root, path, depth, ext)]
        while stack:
            step = stack.pop()
            if step[0] is _EXIT:
                del self.active[step[1]]
                continue
            obj, path, depth, ext = step
            if depth > _MSGPACK_DEPTH:
                return _Problem(path, obj, "deep")
            cls = type(obj)
            if cls in _SCALARS:
                continue
            if cls is str:
                try:
                    obj.encode("utf-8")
                except UnicodeEncodeError as exc:
                    return _Problem(path, obj, "text", str(exc))
                continue
            result = self._expand(obj, path, depth, ext)
            if isinstance(result, _Problem):
                return result
            if result is None:
                continue
            key, children = result
            if key is not None:
                if key in self.active:
                    return _Problem(path, obj, "cycle", self.active[key])
                self.active[key] = path
                stack.append((_EXIT, key))
            stack.extend(reversed(children))
        return None

    def _expand(self, obj: Any, path: str, depth: int, ext: int) -> _Problem | _Expanded | None:
        """What to walk next for ``obj``: a problem, nothing (``None``), or (cycle key, children)."""
        if isinstance(obj, dict):
            steps: list[_Step] = []
            for k, v in obj.items():
                steps.append((k, f"{path} key {_short_repr(k)}", depth + 1, ext))
                steps.append((v, f"{path}[{_short_repr(k)}]", depth + 1, ext))
            return id(obj), steps
        if isinstance(obj, list):
            return id(obj), [(v, f"{path}[{i}]", depth + 1, ext) for i, v in enumerate(obj)]
        if isinstance(obj, tuple | set | frozenset | RemoteError) and ext >= MAX_EXT_DEPTH:
            return _Problem(path, obj, "deep_ext")
        if isinstance(obj, tuple):
            return id(obj), [(v, f"{path}[{i}]", 1, ext + 1) for i, v in enumerate(obj)]
        if isinstance(obj, set | frozenset):
            return id(obj), [(v, f"{path} element {_short_repr(v)}", 1, ext + 1) for v in obj]
        if isinstance(obj, enum.Enum):
            return None, [(obj.value, path, depth, ext)]
        if isinstance(obj, RemoteError):
            return id(obj), [(obj.details, f"{path}.details", 2, ext + 1)]
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(obj, pydantic.BaseModel):
            try:
                dumped = obj.model_dump(mode="python")
            except Exception as exc:
                return _Problem(path, obj, "error", f"{type(exc).__name__}: {exc}")
            return id(obj), [(v, f"{path}.{k}", depth + 1, ext) for k, v in dumped.items()]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = dataclasses.fields(obj)
            return id(obj), [(getattr(obj, f.name), f"{path}.{f.name}", depth + 1, ext) for f in fields]
        module = getattr(type(obj), "__module__", "") or ""
        if module.startswith("numpy"):
            found = self._numpy(obj, path, ext)
            if found is not None:
                return found
        elif module.startswith("pandas"):
            found = self._pandas(obj, path, ext)
            if found is not None:
                return found
        try:
            replacement = _DEFAULTS[min(ext, MAX_EXT_DEPTH)](obj)
        except Exception as exc:
            if isinstance(exc, TypeError) and str(exc).startswith("cannot serialize an object of type"):
                return _Problem(path, obj, "unsupported")
            return _Problem(path, obj, "error", f"{type(exc).__name__}: {exc}")
        if isinstance(replacement, _ExtType):
            return None
        return None, [(replacement, path, depth, ext)]

    def _numpy(self, obj: Any, path: str, ext: int) -> _Expanded | None:
        import numpy as np

        if isinstance(obj, np.ndarray) and obj.dtype == np.dtype(object):
            return id(obj), [(obj.tolist(), path, 1, ext + 1)]
        return None

    def _pandas(self, obj: Any, path: str, ext: int) -> _Expanded | None:
        import pandas as pd

        steps: list[_Step] = []
        if isinstance(obj, pd.DataFrame):
            for i in range(obj.shape[1]):
                col = obj.iloc[:, i]
                if col.dtype == object:
                    col_path = f"{path}[{_short_repr(obj.columns[i])}]"
                    steps.extend((v, f"{col_path}.iloc[{j}]", 3, ext + 2) for j, v in enumerate(col))
        elif isinstance(obj, pd.Series | pd.Index) and obj.dtype == object:
            steps.extend((v, f"{path}.iloc[{j}]", 3, ext + 2) for j, v in enumerate(obj))
        if not steps:
            return None
        return id(obj), steps


def _find_problem(obj: Any, what: str) -> _Problem | None:
    try:
        return _walk_for_problem(obj, what)
    except Exception:  # e.g. a property raising while walked: fall back to the encoder's own message
        return None


def _walk_for_problem(obj: Any, what: str) -> _Problem | None:
    finder = _PathFinder()
    if what == "job" and isinstance(obj, dict):
        finder.active[id(obj)] = "job"
        for key, value in obj.items():
            name = JOB_FIELD_NAMES.get(key) if isinstance(key, str) else None
            # arq's args tuple travels as a list inside the job dict: depth 2 of the outer packer
            problem = finder.find(value, name or f"job[{_short_repr(key)}]", 1, 0)
            if problem is not None:
                return problem
        return None
    return finder.find(obj, what)


def _encode_error_message(problem: _Problem | None, what: str, exc: BaseException) -> str:
    if problem is None:
        return (
            f"cannot serialize {what} for the safe wire format (msgpack): {type(exc).__name__}: {exc}; {_ENCODE_HINT}"
        )
    type_name = _type_name(type(problem.obj))
    if problem.reason == "cycle":
        return (
            f"cannot serialize {problem.path}: it refers back to {problem.detail}, which contains it "
            "(a reference cycle); msgpack cannot encode self-referencing data. Pass a copy without "
            "the cycle."
        )
    if problem.reason == "deep":
        return (
            f"cannot serialize {problem.path}: the data is nested more than {_MSGPACK_DEPTH} levels deep; "
            "flatten it or store it elsewhere and pass a reference."
        )
    if problem.reason == "deep_ext":
        return (
            f"cannot serialize {problem.path}: values are nested more than {MAX_EXT_DEPTH} levels deep "
            "in tuples, sets, arrays, frames or errors; use lists, or flatten the data."
        )
    if problem.reason == "text":
        return (
            f"cannot serialize {problem.path}: the string cannot be encoded as UTF-8 ({problem.detail}); "
            "pass bytes for binary data."
        )
    if problem.reason == "error":
        return (
            f"cannot serialize {problem.path} of type {type_name} for the safe wire format (msgpack): "
            f"{problem.detail}; {_ENCODE_HINT}"
        )
    return f"cannot serialize {problem.path} of type {type_name} for the safe wire format (msgpack): {_ENCODE_HINT}"


# ------------------------------------------------------------------------------------------- pickle


class _SafeExceptionPickler(pickle.Pickler):
    """A pickler that turns exceptions into :class:`RemoteError` (the wire never carries classes)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            err = _remote_error_of(obj)
            return _rebuild_remote_error, (err.type, err.message, err.traceback, err.kind, err.details)
        return NotImplemented


# -------------------------------------------------------------------------------------------- codec


class Codec:
    """Encodes values and arq job/result dicts to taskq payloads, and decodes them back safely.

    ``Codec()`` (msgpack) never unpickles. ``Codec("pickle")`` writes pickles and reads both
    formats; use it only with ``TASKQ_SERIALIZER=pickle`` on every client and worker.

    Example::

        codec = Codec()
        codec.loads(codec.dumps({"x": (1, 2)}))        # {'x': (1, 2)}
        # arq: Worker(functions, job_serializer=codec.serializer, job_deserializer=codec.deserializer)
    """

    __slots__ = ("_pickle", "format")

    def __init__(self, format: Literal["msgpack", "pickle"] = "msgpack") -> None:
        if format not in ("msgpack", "pickle"):
            raise ConfigurationError(
                f"unknown serializer {format!r}: use 'msgpack' (the default) or 'pickle' (TASKQ_SERIALIZER)"
            )
        self.format: Literal["msgpack", "pickle"] = format
        self._pickle = format == "pickle"

    def __repr__(self) -> str:
        return f"Codec({self.format!r})"

    # ------------------------------------------------------------------------------------- encode
    def dumps(self, obj: Any, *, what: str = "value") -> bytes:
        """Encode ``obj`` with the taskq header; ``what`` names it in errors (``args``, ``result``).

        Raises :class:`SerializationError` naming the part that cannot travel, e.g.
        ``cannot serialize args[1]['model'] of type sklearn.Foo ...``.

        Example::

            codec = default_codec()
            codec.dumps([1, "two", 3.0])          # b'\\xc1TQ\\x01m\\x93\\x01\\xa3two\\xcb...'
            codec.dumps({"rows": 3}, what="result")
        """
        if self._pickle:
            return self._pickle_dumps(obj, what)
        try:
            body: bytes = _Packer(default=_default, strict_types=True, buf_size=_BUF_SIZE).pack(obj)
        except Exception as exc:
            raise SerializationError(_encode_error_message(_find_problem(obj, what), what, exc)) from exc
        return _HEADER_MSGPACK + body

    def dumps_many(self, objs: Iterable[Any], *, what: str = "value") -> list[bytes]:
        """Encode each of ``objs`` as :meth:`dumps` does, with one packer (much cheaper for many small values).

        Example::

            codec = default_codec()
            codec.dumps_many([[1, "a"], [2, "b"]])   # [codec.dumps([1, "a"]), codec.dumps([2, "b"])]
        """
        if self._pickle:
            return [self._pickle_dumps(obj, what) for obj in objs]
        packer = _Packer(default=_default, strict_types=True, autoreset=True)
        out: list[bytes] = []
        for obj in objs:
            try:
                out.append(_HEADER_MSGPACK + packer.pack(obj))
            except Exception:
                packer.reset()
                out.append(self.dumps(obj, what=what))  # raises the SerializationError naming the part
        return out

    def _pickle_dumps(self, obj: Any, what: str) -> bytes:
        buffer = io.BytesIO()
        buffer.write(_HEADER_PICKLE)
        try:
            _SafeExceptionPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        except Exception as exc:
            raise SerializationError(f"cannot serialize {what} with pickle: {type(exc).__name__}: {exc}") from exc
        return buffer.getvalue()

    def serializer(self, d: dict[str, Any]) -> bytes:
        """Encode an arq job or result dict (arq's ``job_serializer``); errors name ``args[1]`` etc.

        Example::

            # arq: Worker(functions, job_serializer=codec.serializer, job_deserializer=codec.deserializer)
        """
        if self._pickle:
            return self._pickle_dumps(d, "job")
        payload = d
        args = d.get("a")
        if type(args) is tuple:
            # arq's args are always a tuple: send a plain list (cheaper than a tuple extension) and
            # make it a tuple again in deserializer()
            payload = d.copy()
            payload["a"] = list(args)
        try:
            body: bytes = _Packer(default=_default, strict_types=True, buf_size=_BUF_SIZE).pack(payload)
        except Exception as exc:
            raise SerializationError(_encode_error_message(_find_problem(d, "job"), "the job", exc)) from exc
        return _HEADER_MSGPACK + body

    def describe_path(self, obj: Any, *, what: str = "value") -> str | None:
        """Where in ``obj`` the first part that cannot be encoded is, or ``None`` if all of it can.

        With ``what="job"`` the object is an arq job/result dict and its keys read as ``args``,
        ``kwargs`` and ``result``.

        Example::

            codec = default_codec()
            codec.describe_path({"a": (1, object()), "k": {}}, what="job")   # 'args[1]'
            codec.describe_path([1, 2])                                       # None
        """
        problem = _find_problem(obj, what)
        return None if problem is None else problem.path

    # ------------------------------------------------------------------------------------- decode
    def loads(self, data: bytes | bytearray | memoryview) -> Any:
        """Decode a taskq payload; refuse pickles (unless a pickle codec), garbage and newer versions.

        Raises :class:`DeserializationError` with what happened and what to do.

        Example::

            codec = default_codec()
            codec.loads(codec.dumps({"a": 1}))     # {'a': 1}
            try:
                codec.loads(b"\\x80\\x04...")
            except DeserializationError as exc:
                print(exc)                         # refused to load a pickle payload ...
        """
        if type(data) is bytes and data.startswith(_HEADER_MSGPACK):
            return _unpack_body(data)
        return self._loads_other(data)

    def loads_bodies(self, count: int, bodies: bytes) -> list[Any]:
        """Decode ``count`` msgpack values whose bodies (each without its taskq header) are concatenated.

        One C-level decode for many small values (a cache's rows). Raises
        :class:`DeserializationError` unless the bytes hold exactly ``count`` values.

        Example::

            codec = default_codec()
            blobs = codec.dumps_many([1, "two"])
            codec.loads_bodies(2, b"".join(b[HEADER_SIZE:] for b in blobs))   # [1, 'two']
        """
        if count < 16:
            head = bytes([0x90 | count])
        elif count < 65536:
            head = b"\xdc" + count.to_bytes(2, "big")
        else:
            head = b"\xdd" + count.to_bytes(4, "big")
        collecting = gc.isenabled()
        gc.disable()  # many small containers at once: the cyclic collector would run over them again and again
        try:
            out = _unpackb(head + bodies, ext_hook=_ext_hook, strict_map_key=False)
        except DeserializationError:
            raise
        except Exception as exc:
            raise _corrupt(bodies, exc) from exc
        finally:
            if collecting:
                gc.enable()
        if type(out) is not list or len(out) != count:
            raise DeserializationError(f"expected {count} values, decoded {len(out) if type(out) is list else 1}")
        return out

    def _loads_other(self, data: bytes | bytearray | memoryview) -> Any:
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise DeserializationError(f"expected bytes to decode, got {_type_name(type(data))}")
            data = bytes(data)
            if data.startswith(_HEADER_MSGPACK):
                return _unpack_body(data)
        if data[:3] == MAGIC:
            if len(data) < HEADER_SIZE:
                raise DeserializationError(f"truncated taskq payload ({len(data)} bytes, header incomplete)")
            version = data[3]
            if version > WIRE_VERSION:
                raise DeserializationError(
                    f"this payload uses taskq wire format version {version}, but this taskq_sdk reads "
                    f"only version {WIRE_VERSION}: upgrade taskq_sdk on this side (rolling deploys: "
                    "upgrade workers and clients together)"
                )
            if version != WIRE_VERSION:
                raise DeserializationError(
                    f"this payload uses taskq wire format version {version}, which this taskq_sdk "
                    f"(version {WIRE_VERSION}) does not read"
                )
            fmt = data[4:5]
            if fmt == FORMAT_PICKLE:
                if not self._pickle:
                    raise DeserializationError(_PICKLE_REFUSED)
                return self._unpickle(data[HEADER_SIZE:])
            raise DeserializationError(f"unknown taskq payload format {fmt!r} (expected b'm' or b'p')")
        if data[:1] == b"\x80":
            if self._pickle:  # e.g. written by plain arq; this process opted into pickle
                return self._unpickle(data)
            raise DeserializationError(_PICKLE_REFUSED)
        if not data:
            raise DeserializationError("empty payload: expected taskq-encoded bytes")
        raise DeserializationError(
            f"not a taskq payload ({len(data)} bytes starting {data[:8]!r}): it lacks the taskq header. "
            "It was written by something other than taskq_sdk (e.g. plain arq) or is corrupt"
        )

    def _unpickle(self, body: bytes) -> Any:
        try:
            return pickle.loads(body)
        except Exception as exc:
            raise DeserializationError(f"corrupt pickle payload: {type(exc).__name__}: {exc}") from exc

    def deserializer(self, b: bytes) -> dict[str, Any]:
        """Decode an arq job or result dict (arq's ``job_deserializer``); ``args`` comes back a tuple.

        Example::

            # not run: needs a raw arq job read from Redis
            arq.jobs.deserialize_job(raw, deserializer=codec.deserializer)
        """
        if type(b) is bytes and b.startswith(_HEADER_MSGPACK) and len(b) < _MEMORYVIEW_FROM:
            # the common case, inlined: a small msgpack job
            try:
                d = _unpackb(b[HEADER_SIZE:], ext_hook=_ext_hook, strict_map_key=False)
            except DeserializationError:
                raise
            except Exception as exc:
                raise _corrupt(b, exc) from exc
        else:
            d = self.loads(b)
        if type(d) is not dict:
            raise DeserializationError(f"expected an arq job dict, got {_type_name(type(d))}")
        args = d.get("a")
        if type(args) is list:
            d["a"] = tuple(args)
        return d


def _unpack_body(data: bytes) -> Any:
    """Unpack the msgpack body of ``data`` (which starts with the msgpack header)."""
    body: Any = data[HEADER_SIZE:] if len(data) < _MEMORYVIEW_FROM else memoryview(data)[HEADER_SIZE:]
    try:
        return _unpackb(body, ext_hook=_ext_hook, strict_map_key=False)
    except DeserializationError:
        raise
    except Exception as exc:
        raise _corrupt(data, exc) from exc


def _corrupt(data: bytes, exc: Exception) -> DeserializationError:
    return DeserializationError(f"corrupt taskq payload ({len(data)} bytes): {type(exc).__name__}: {exc}")


@functools.cache
def default_codec() -> Codec:
    """The shared msgpack :class:`Codec` (safe: never unpickles).

    Example::

        data = default_codec().dumps({"x": 1})
    """
    return Codec("msgpack")


def codec_for(settings: Any) -> Codec:
    """The wire codec a :class:`~taskq_sdk.config.Settings` asks for (msgpack unless pickle was opted into).

    Example::

        codec = codec_for(Settings())   # Codec('msgpack')
    """
    return Codec("pickle" if getattr(settings, "serializer", "msgpack") == "pickle" else "msgpack")
