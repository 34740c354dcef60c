"""The safe wire format: round trips, documented conversions, refusals, error paths, arq compatibility."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import os
import pathlib
import pickle
import random
import struct
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, NamedTuple

import msgpack
import pydantic
import pytest
from arq.jobs import deserialize_job, deserialize_result, serialize_job, serialize_result

from taskq_sdk.errors import ConfigurationError, DeserializationError, SerializationError
from taskq_sdk.serialization import (
    EXT_BIGINT,
    EXT_CODES,
    EXT_NDARRAY,
    EXT_REMOTE_ERROR,
    EXT_TUPLE,
    HEADER_SIZE,
    JOB_FIELD_NAMES,
    MAX_EXT_DEPTH,
    TRACEBACK_LIMIT,
    WIRE_VERSION,
    Codec,
    RemoteError,
    default_codec,
)

MSGPACK_HEADER = b"\xc1TQ\x01m"
PICKLE_HEADER = b"\xc1TQ\x01p"
PICKLE_REFUSED = (
    "refused to load a pickle payload: taskq never unpickles unless TASKQ_SERIALIZER=pickle "
    "is set on both clients and workers"
)


@pytest.fixture
def codec() -> Codec:
    return Codec()


def roundtrip(value: Any, codec: Codec | None = None) -> Any:
    c = codec or Codec()
    return c.loads(c.dumps(value))


def assert_identical(a: Any, b: Any) -> None:
    """Same types all the way down, same values, floats bit for bit (NaN, -0.0)."""
    assert type(a) is type(b), f"{type(a).__name__} != {type(b).__name__}: {a!r} vs {b!r}"
    if isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b)
    elif isinstance(a, complex):
        assert_identical(a.real, b.real)
        assert_identical(a.imag, b.imag)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_identical(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            assert_identical(ka, kb)
            assert_identical(va, vb)
    elif isinstance(a, decimal.Decimal):
        assert str(a) == str(b)
    elif isinstance(a, dt.datetime | dt.time):
        assert a == b
        assert (a.tzinfo is None) == (b.tzinfo is None)
        assert a.utcoffset() == b.utcoffset()
        assert a.isoformat() == b.isoformat()
    else:
        assert a == b


# ------------------------------------------------------------------------------------------ envelope


def test_every_payload_starts_with_the_header(codec: Codec) -> None:
    assert WIRE_VERSION == 1 and HEADER_SIZE == 5
    assert codec.dumps(1).startswith(MSGPACK_HEADER)
    assert codec.dumps({"a": 1}) == MSGPACK_HEADER + msgpack.packb({"a": 1})
    assert Codec("pickle").dumps(1).startswith(PICKLE_HEADER)
    job = {"t": 1, "f": "add", "a": (1, 2), "k": {}, "et": 0}
    assert codec.serializer(job).startswith(MSGPACK_HEADER)
    assert Codec("pickle").serializer(job).startswith(PICKLE_HEADER)


def test_default_codec_is_a_cached_msgpack_codec() -> None:
    assert default_codec() is default_codec()
    assert default_codec().format == "msgpack"
    assert repr(default_codec()) == "Codec('msgpack')"


def test_unknown_codec_format_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="msgpack"):
        Codec("json")  # type: ignore[arg-type]


def test_ext_codes_are_unique_application_codes() -> None:
    assert all(0 <= code <= 127 for code in EXT_CODES)
    assert len(set(EXT_CODES)) == len(EXT_CODES)


# ------------------------------------------------------------------------------------- round trips

UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
NEG = dt.timezone(dt.timedelta(hours=-3, seconds=-17))

EXACT: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "zero": 0,
    "int": -42,
    "u64max": 2**64 - 1,
    "i64min": -(2**63),
    "float": 3.14,
    "neg-zero": -0.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "denormal": 5e-324,
    "str": "héllo ✓ 🎉",
    "empty-str": "",
    "bytes": b"\x00\xff\xc1TQ",
    "empty-bytes": b"",
    "list": [1, "a", None, [2.5, []]],
    "dict": {"a": 1, "b": {"c": [1, 2]}},
    "int-keys": {1: "one", -2: "minus two", 3.5: "float key"},
    "tuple": (1, "a", (2, (3,)), []),
    "empty-tuple": (),
    "tuple-in-list": [(1, 2), (3, 4)],
    "tuple-keys": {(1, "a"): "t", frozenset({1}): "f"},
    "set": {1, "a", (2, 3)},
    "empty-set": set(),
    "frozenset": frozenset({1.5, "b"}),
    "complex": 1.5 - 2j,
    "complex-nan": complex(float("nan"), -0.0),
    "decimal": decimal.Decimal("1.10"),
    "decimal-exp": decimal.Decimal("-1.23E+400"),
    "decimal-nan": decimal.Decimal("NaN"),
    "decimal-snan": decimal.Decimal("sNaN"),
    "decimal-inf": decimal.Decimal("-Infinity"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "datetime-naive": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "datetime-utc": dt.datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
    "datetime-ist": dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=IST),
    "datetime-odd-offset": dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=NEG),
    "datetime-min": dt.datetime.min,
    "datetime-max": dt.datetime.max,
    "date": dt.date(2024, 2, 29),
    "date-min": dt.date.min,
    "time": dt.time(23, 59, 59, 999999),
    "time-tz": dt.time(1, 2, 3, tzinfo=IST),
    "time-midnight": dt.time(0),
    "timedelta": dt.timedelta(days=3, seconds=7, microseconds=11),
    "timedelta-neg": dt.timedelta(microseconds=-1),
    "timedelta-max": dt.timedelta.max,
    "timedelta-min": dt.timedelta.min,
    "bigint": 2**64,
    "neg-bigint": -(2**63) - 1,
    "huge-int": 2**1000 + 12345,
    "huge-neg-int": -(3**2000),
    "beyond-str-digits-limit": 10**5000 + 1,
    "bigint-key": {2**100: "big"},
    "nested-mix": {"when": [dt.date(2020, 1, 1), (uuid.UUID(int=1), {decimal.Decimal("2")})]},
}


@pytest.mark.parametrize("value", list(EXACT.values()), ids=list(EXACT))
def test_exact_round_trip(codec: Codec, value: Any) -> None:
    assert_identical(codec.loads(codec.dumps(value)), value)


@pytest.mark.parametrize("value", list(EXACT.values()), ids=list(EXACT))
def test_exact_round_trip_with_the_pickle_codec(value: Any) -> None:
    assert_identical(roundtrip(value, Codec("pickle")), value)


def test_named_timezone_keeps_its_offset() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        paris = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database")
    value = dt.datetime(2024, 7, 1, 12, 30, tzinfo=paris)
    back = roundtrip(value)
    assert back == value and back.utcoffset() == dt.timedelta(hours=2)
    assert isinstance(back.tzinfo, dt.timezone), "documented: a named zone becomes a fixed offset"


def test_big_ints_use_the_extension_only_beyond_64_bits(codec: Codec) -> None:
    assert codec.dumps(2**64 - 1) == MSGPACK_HEADER + msgpack.packb(2**64 - 1)
    assert codec.dumps(-(2**63)) == MSGPACK_HEADER + msgpack.packb(-(2**63))
    body = msgpack.unpackb(codec.dumps(2**64)[HEADER_SIZE:], ext_hook=lambda c, d: (c, d))
    assert body[0] == EXT_BIGINT


def test_large_payloads_round_trip(codec: Codec) -> None:
    value = {"blob": os.urandom(300_000), "items": list(range(50_000)), "t": tuple(range(1000))}
    data = codec.dumps(value)
    assert len(data) > 64 * 1024
    assert_identical(codec.loads(data), value)
    assert_identical(codec.loads(bytearray(data)), value)
    assert_identical(codec.loads(memoryview(data)), value)


class Color(enum.Enum):
    RED = "red"
    BLUE = (1, 2)


class Level(enum.IntEnum):
    LOW = 1


class Mode(enum.StrEnum):
    FAST = "fast"


class Point(NamedTuple):
    x: int
    y: int


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyStr(str):
    def __str__(self) -> str:
        return "overridden"


class MyList(list[Any]):
    pass


@dataclasses.dataclass
class Inner:
    when: dt.date
    tags: tuple[str, ...]


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    items: list[Inner]


class Model(pydantic.BaseModel):
    name: str
    when: dt.datetime
    pair: tuple[int, int]
    child: Model | None = None


CONVERTED = {
    "enum": (Color.RED, "red"),
    "enum-tuple-value": (Color.BLUE, (1, 2)),
    "intenum": (Level.LOW, 1),
    "strenum": (Mode.FAST, "fast"),
    "namedtuple": (Point(1, 2), (1, 2)),
    "int-subclass": (MyInt(7), 7),
    "big-int-subclass": (MyInt(2**80), 2**80),
    "float-subclass": (MyFloat(1.5), 1.5),
    "str-subclass": (MyStr("kept"), "kept"),
    "list-subclass": (MyList([1, (2,)]), [1, (2,)]),
    "ordereddict": (collections.OrderedDict(b=1, a=2), {"b": 1, "a": 2}),
    "defaultdict": (collections.defaultdict(list, {"x": [1]}), {"x": [1]}),
    "counter": (collections.Counter("aab"), {"a": 2, "b": 1}),
    "bytearray": (bytearray(b"ab"), b"ab"),
    "memoryview": (memoryview(b"cd"), b"cd"),
    "path": (pathlib.Path("/tmp/x/y.txt"), "/tmp/x/y.txt"),
    "pure-windows-path": (pathlib.PureWindowsPath(r"C:\data\f.csv"), r"C:\data\f.csv"),
    "dataclass": (
        Outer("o", Inner(dt.date(2020, 1, 2), ("a",)), [Inner(dt.date(2021, 1, 1), ())]),
        {
            "name": "o",
            "inner": {"when": dt.date(2020, 1, 2), "tags": ("a",)},
            "items": [{"when": dt.date(2021, 1, 1), "tags": ()}],
        },
    ),
    "pydantic": (
        Model(
            name="m",
            when=dt.datetime(2020, 1, 1, tzinfo=UTC),
            pair=(1, 2),
            child=Model(name="c", when=dt.datetime(2021, 1, 1), pair=(3, 4)),
        ),
        {
            "name": "m",
            "when": dt.datetime(2020, 1, 1, tzinfo=UTC),
            "pair": (1, 2),
            "child": {"name": "c", "when": dt.datetime(2021, 1, 1), "pair": (3, 4), "child": None},
        },
    ),
}


@pytest.mark.parametrize(("value", "expected"), list(CONVERTED.values()), ids=list(CONVERTED))
def test_documented_conversions(codec: Codec, value: Any, expected: Any) -> None:
    assert_identical(codec.loads(codec.dumps(value)), expected)


# ------------------------------------------------------------------------------------------- numpy


def test_numpy_scalars_become_python_scalars(codec: Codec) -> None:
    np = pytest.importorskip("numpy")
    cases = [
        (np.float64(1.5), 1.5),
        (np.float32(0.25), 0.25),
        (np.int8(-3), -3),
        (np.uint64(2**64 - 1), 2**64 - 1),
        (np.bool_(True), True),
        (np.str_("s"), "s"),
        (np.bytes_(b"b"), b"b"),
        (np.complex128(1 + 2j), 1 + 2j),
    ]
    for value, expected in cases:
        assert_identical(codec.loads(codec.dumps(value)), expected)
    assert_identical(codec.loads(codec.dumps({"x": [np.int64(5)]})), {"x": [5]})


def test_numpy_datetime_scalars_stay_exact(codec: Codec) -> None:
    np = pytest.importorskip("numpy")
    for value in (
        np.datetime64("2020-01-01T00:00:00.000000001"),
        np.datetime64("NaT"),
        np.timedelta64(5, "ns"),
        np.datetime64("2020-01-01", "D"),
        np.longdouble("1.5"),
    ):
        back = codec.loads(codec.dumps(value))
        assert type(back) is type(value) and back.dtype == value.dtype
        assert back.tobytes() == value.tobytes()


NUMPY_ARRAYS: dict[str, Any] = {
    "int64-2d": lambda np: np.arange(12, dtype=np.int64).reshape(3, 4),
    "int8": lambda np: np.array([-128, 0, 127], dtype=np.int8),
    "uint64": lambda np: np.array([0, 2**64 - 1], dtype=np.uint64),
    "float16": lambda np: np.array([1.5, np.nan, -0.0], dtype=np.float16),
    "float32": lambda np: np.linspace(0, 1, 7, dtype=np.float32),
    "float64-nan": lambda np: np.array([np.nan, np.inf, -np.inf, -0.0]),
    "complex128": lambda np: np.array([1 + 2j, np.nan * 1j]),
    "bool": lambda np: np.array([[True, False], [False, True]]),
    "big-endian": lambda np: np.arange(5, dtype=">i4"),
    "datetime64-ns": lambda np: np.array(["2020-01-01T00:00:00.000000001", "NaT"], dtype="M8[ns]"),
    "datetime64-D": lambda np: np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-05")),
    "timedelta64": lambda np: np.array([1, -2, 3], dtype="m8[s]"),
    "unicode": lambda np: np.array(["a", "héllo"]),
    "bytes": lambda np: np.array([b"ab", b"c"]),
    "structured": lambda np: np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
    "0-d": lambda np: np.array(3.25),
    "empty": lambda np: np.zeros((0, 3)),
    "empty-3d": lambda np: np.zeros((2, 0, 4), dtype=np.int16),
    "3-d": lambda np: np.arange(24.0).reshape(2, 3, 4),
    "fortran": lambda np: np.asfortranarray(np.arange(6).reshape(2, 3)),
    "strided": lambda np: np.arange(20)[::3],
    "transposed": lambda np: np.arange(6).reshape(2, 3).T,
}


@pytest.mark.parametrize("make", list(NUMPY_ARRAYS.values()), ids=list(NUMPY_ARRAYS))
def test_numpy_array_round_trip_is_exact(codec: Codec, make: Any) -> None:
    np = pytest.importorskip("numpy")
    arr = make(np)
    back = codec.loads(codec.dumps(arr))
    assert type(back) is np.ndarray
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()
    assert back.flags.writeable, "decoded arrays are ordinary writeable arrays"
    if back.size:
        back.flat[0] = back.flat[-1]


def test_numpy_object_arrays_carry_their_elements(codec: Codec) -> None:
    np = pytest.importorskip("numpy")
    arr = np.empty((2, 2), dtype=object)
    arr[0, 0], arr[0, 1], arr[1, 0], arr[1, 1] = 1, "a", [1, 2], (dt.date(2020, 1, 1), None)
    back = codec.loads(codec.dumps(arr))
    assert back.dtype == object and back.shape == (2, 2)
    assert back[0, 0] == 1 and back[0, 1] == "a" and back[1, 0] == [1, 2]
    assert back[1, 1] == (dt.date(2020, 1, 1), None)


def test_numpy_array_uses_raw_bytes(codec: Codec) -> None:
    np = pytest.importorskip("numpy")
    arr = np.random.default_rng(0).random(100_000)
    data = codec.dumps(arr)
    assert arr.nbytes < len(data) < arr.nbytes + 200
    body = msgpack.unpackb(data[HEADER_SIZE:], ext_hook=lambda c, d: c)
    assert body == EXT_NDARRAY


def test_numpy_missing_on_decode_says_how_to_fix(codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    np = pytest.importorskip("numpy")
    data = codec.dumps({"x": np.arange(3)})
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` now raises ImportError
    with pytest.raises(DeserializationError, match=r'numpy is not installed.*pip install "taskq-sdk\[pandas\]"'):
        codec.loads(data)


# ------------------------------------------------------------------------------------------ pandas


def _frames(pd: Any, np: Any) -> dict[str, Any]:
    n = 5
    return {
        "common-dtypes": pd.DataFrame(
            {
                "i": np.arange(n, dtype=np.int64),
                "f": [1.0, np.nan, 3.0, 4.5, -0.0],
                "b": [True, False, True, True, False],
                "s": list("abcde"),
                "o": pd.Series(["x", 1, None, 2.5, (1, 2)], dtype=object),
                "dt": pd.date_range("2020-01-01", periods=n, freq="h"),
                "dt-ns": pd.to_datetime(
                    ["2020-01-01T00:00:00.000000001", None, "2021-01-01", None, "1970-01-01"], format="ISO8601"
                ).as_unit("ns"),
                "td": pd.to_timedelta(np.arange(n), unit="s"),
                "u8": np.arange(n, dtype=np.uint8),
                "f32": np.arange(n, dtype=np.float32),
            }
        ),
        "nullable": pd.DataFrame(
            {
                "I": pd.array([1, None, 3], dtype="Int64"),
                "F": pd.array([1.5, None, 2.0], dtype="Float64"),
                "B": pd.array([True, None, False], dtype="boolean"),
                "S": pd.array(["a", None, "c"], dtype="string"),
            }
        ),
        "categorical": pd.DataFrame(
            {"c": pd.Categorical(["a", "b", "a", None], categories=["b", "a", "z"], ordered=True)}
        ),
        "tz-aware": pd.DataFrame(
            {
                "paris": pd.date_range("2020-03-29", periods=3, freq="h", tz="Europe/Paris"),
                "utc": pd.date_range("2020-01-01", periods=3, tz="UTC"),
            }
        ),
        "datetime-index-with-freq": pd.DataFrame(
            {"x": range(4)}, index=pd.date_range("2021-01-01", periods=4, freq="D", name="when")
        ),
        "duplicate-string-index": pd.DataFrame({"x": [1, 2, 3]}, index=["a", "a", "b"]),
        "range-index-step": pd.DataFrame({"x": [1, 2]}, index=pd.RangeIndex(10, 14, 2, name="r")),
        "multiindex-rows": pd.DataFrame(
            {"x": [1, 2, 3, 4]}, index=pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["l", "n"])
        ),
        "multiindex-columns": pd.DataFrame(
            np.arange(8).reshape(2, 4), columns=pd.MultiIndex.from_product([["a", "b"], ["x", "y"]])
        ),
        "duplicate-columns": pd.DataFrame([[1, 2.0], [3, 4.0]], columns=["a", "a"]),
        "int-columns": pd.DataFrame({1: [1], 2: ["x"]}),
        "tuple-column-name": pd.DataFrame({("a", 1): [1.0]}),
        "empty": pd.DataFrame(),
        "rows-no-columns": pd.DataFrame(index=[1, 2, 3]),
        "columns-no-rows": pd.DataFrame({"a": pd.Series([], dtype="float64"), "b": pd.Series([], dtype=object)}),
        "object-strings": pd.DataFrame({"o": pd.Series(["a", "b"], dtype=object)}),
    }


@pytest.fixture(scope="module")
def frames() -> dict[str, Any]:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    return _frames(pd, np)


FRAME_NAMES = [
    "common-dtypes",
    "nullable",
    "categorical",
    "tz-aware",
    "datetime-index-with-freq",
    "duplicate-string-index",
    "range-index-step",
    "multiindex-rows",
    "multiindex-columns",
    "duplicate-columns",
    "int-columns",
    "tuple-column-name",
    "empty",
    "rows-no-columns",
    "columns-no-rows",
    "object-strings",
]


@pytest.mark.parametrize("name", FRAME_NAMES)
def test_dataframe_round_trip(codec: Codec, frames: dict[str, Any], name: str) -> None:
    pd = pytest.importorskip("pandas")
    df = frames[name]
    back = codec.loads(codec.dumps(df))
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert back.index.equals(df.index) and type(back.index) is type(df.index)


def test_every_frame_case_is_tested(frames: dict[str, Any]) -> None:
    assert sorted(frames) == sorted(FRAME_NAMES)


def test_series_and_index_round_trip(codec: Codec) -> None:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    for s in (
        pd.Series([1, 2, 3], name="x"),
        pd.Series(["a", None], index=pd.Index(["p", "q"], name="k"), name=("t", 1)),
        pd.Series(pd.Categorical(["a", "b"])),
        pd.Series(np.array([1.5, np.nan]), index=pd.date_range("2020", periods=2, tz="UTC")),
        pd.Series([], dtype="Int64"),
    ):
        pd.testing.assert_series_equal(codec.loads(codec.dumps(s)), s, check_exact=True)
    for idx in (
        pd.RangeIndex(2, 10, 3, name="r"),
        pd.Index([1.5, 2.5]),
        pd.Index(["a", "b", "a"]),
        pd.Index([1, "a"], dtype=object),
        pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["n", None]),
        pd.date_range("2020-01-31", periods=3, freq="ME"),
        pd.timedelta_range("1s", periods=3, freq="s"),
        pd.CategoricalIndex(["a", "b"]),
    ):
        back = codec.loads(codec.dumps(idx))
        pd.testing.assert_index_equal(back, idx, exact=True)
        assert getattr(back, "freq", None) == getattr(idx, "freq", None)


def test_pandas_scalars_and_arrays(codec: Codec) -> None:
    pd = pytest.importorskip("pandas")
    ts = pd.Timestamp("2020-01-01 12:00:00.123456789", tz="UTC")
    back = codec.loads(codec.dumps(ts))
    assert type(back) is dt.datetime and back == dt.datetime(2020, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert_identical(codec.loads(codec.dumps(pd.Timedelta("1 days 3us 7ns"))), dt.timedelta(days=1, microseconds=3))
    assert codec.loads(codec.dumps([pd.NaT, pd.NA])) == [None, None], "documented: NaT / NA scalars -> None"
    arr = pd.array([1, None], dtype="Int64")
    pd.testing.assert_extension_array_equal(codec.loads(codec.dumps(arr)), arr)
    cat = pd.Categorical(["x", "y", "x"], ordered=True)
    pd.testing.assert_extension_array_equal(codec.loads(codec.dumps(cat)), cat)


def test_dataframe_numeric_columns_are_sent_as_arrays(codec: Codec) -> None:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    rows = 100_000
    df = pd.DataFrame({"a": np.arange(rows, dtype=np.int64), "b": np.random.default_rng(1).random(rows)})
    data = codec.dumps(df)
    assert len(data) < 16 * rows + 2000, "raw column bytes, not per-value lists"
    pd.testing.assert_frame_equal(codec.loads(data), df, check_exact=True)


def test_pandas_missing_on_decode_says_how_to_fix(codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    pd = pytest.importorskip("pandas")
    data = codec.dumps({"df": pd.DataFrame({"a": [1]})})
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(DeserializationError, match=r'pandas is not installed.*pip install "taskq-sdk\[pandas\]"'):
        codec.loads(data)


def test_importing_the_codec_imports_neither_numpy_nor_pandas() -> None:
    code = (
        "import sys, datetime, decimal\n"
        "import taskq_sdk.serialization as s\n"
        "c = s.Codec()\n"
        "v = {'a': (1, 2), 'b': {3}, 'c': datetime.datetime.now(), 'd': decimal.Decimal('1'), 'e': 2**70}\n"
        "assert c.loads(c.dumps(v)) == v\n"
        "job = {'t': 1, 'f': 'f', 'a': (1, [2]), 'k': {'x': 1.5}, 'et': 0}\n"
        "assert c.deserializer(c.serializer(job)) == job\n"
        "print(sorted(m for m in ('numpy', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ----------------------------------------------------------------------------------- pickle refusal


class Marker:
    """Unpickling this creates a file: proof that a pickle payload ran."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_raw_pickle_is_refused_and_never_runs(codec: Codec, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned-raw"
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        payload = pickle.dumps({"t": 1, "f": "add", "a": [Marker(marker)], "k": {}, "et": 0}, protocol=protocol)
        assert payload.startswith(b"\x80")
        with pytest.raises(DeserializationError) as info:
            codec.loads(payload)
        assert str(info.value) == PICKLE_REFUSED
        with pytest.raises(DeserializationError):
            codec.deserializer(payload)
    for protocol in (0, 1):  # old protocols have no \x80 prefix: refused as headerless
        with pytest.raises(DeserializationError, match="not a taskq payload"):
            codec.loads(pickle.dumps(Marker(marker), protocol=protocol))
    assert not marker.exists()


def test_pickle_inside_the_taskq_envelope_is_refused_by_a_msgpack_codec(codec: Codec, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned-enveloped"
    payload = PICKLE_HEADER + pickle.dumps(Marker(marker))
    with pytest.raises(DeserializationError) as info:
        codec.loads(payload)
    assert str(info.value) == PICKLE_REFUSED
    with pytest.raises(DeserializationError):
        default_codec().deserializer(payload)
    assert not marker.exists()
    # the payload is live: a codec that opted into pickle does run it
    Codec("pickle").loads(payload)
    assert marker.exists()


def test_pickle_codec_is_an_explicit_opt_in(tmp_path: pathlib.Path) -> None:
    pickle_codec = Codec("pickle")
    value = {"marker": Marker(tmp_path / "m"), "when": dt.date(2020, 1, 1)}
    data = pickle_codec.dumps(value)
    assert data.startswith(PICKLE_HEADER)
    back = pickle_codec.loads(data)
    assert back["when"] == dt.date(2020, 1, 1)
    assert (tmp_path / "m").exists()  # arbitrary objects: that is what pickle means
    # it still reads msgpack payloads, and plain arq's headerless pickles
    assert pickle_codec.loads(Codec().dumps((1, 2))) == (1, 2)
    assert pickle_codec.loads(pickle.dumps([1, 2])) == [1, 2]
    with pytest.raises(SerializationError, match="pickle"):
        pickle_codec.dumps(lambda: 0)


def test_pickle_codec_sends_exceptions_as_remote_errors() -> None:
    pickle_codec = Codec("pickle")
    back = pickle_codec.loads(pickle_codec.dumps({"err": KeyError("k")}))
    assert isinstance(back["err"], RemoteError) and back["err"].type == "KeyError"


# ------------------------------------------------------------------------------- version & garbage


def test_newer_wire_version_is_refused_with_upgrade_advice(codec: Codec) -> None:
    newer = b"\xc1TQ" + bytes([WIRE_VERSION + 1]) + b"m" + msgpack.packb({"a": 1})
    with pytest.raises(DeserializationError) as info:
        codec.loads(newer)
    message = str(info.value)
    assert f"version {WIRE_VERSION + 1}" in message and f"version {WIRE_VERSION}" in message
    assert "upgrade taskq_sdk on this side" in message and "workers and clients together" in message
    with pytest.raises(DeserializationError, match="version 0"):
        codec.loads(b"\xc1TQ\x00m\x90")


GARBAGE = {
    "empty": b"",
    "one-byte": b"\xc1",
    "magic-only": b"\xc1TQ",
    "no-format": b"\xc1TQ\x01",
    "unknown-format": b"\xc1TQ\x01j{}",
    "header-only": MSGPACK_HEADER,
    "truncated-body": MSGPACK_HEADER + msgpack.packb([1, 2, 3])[:-1],
    "extra-data": MSGPACK_HEADER + msgpack.packb(1) + b"\x01",
    "reserved-byte": MSGPACK_HEADER + b"\xc1",
    "headerless-msgpack": msgpack.packb({"t": 1, "f": "add", "a": [], "k": {}, "et": 0}),
    "json": b'{"a": 1}',
    "text": b"hello world",
    "unknown-ext": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(99, b"")),
    "tuple-ext-not-a-list": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(EXT_TUPLE, msgpack.packb(5))),
    "tuple-ext-garbage": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(EXT_TUPLE, b"\xc1\xc1")),
    "bad-uuid": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(6, b"short")),
    "bad-datetime": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(7, b"yesterday")),
    "bad-complex": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(4, b"123")),
    "bad-decimal": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(5, b"\xff")),
    "bad-remote-error": MSGPACK_HEADER
    + msgpack.packb(msgpack.ExtType(EXT_REMOTE_ERROR, msgpack.packb([1, 2, 3, 4, 5]))),
    "unhashable-set-member": MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(2, msgpack.packb([[1]]))),
    "list-as-map-key": MSGPACK_HEADER + b"\x81\x91\x01\x02",
}


@pytest.mark.parametrize("data", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_is_a_deserialization_error(codec: Codec, data: bytes) -> None:
    with pytest.raises(DeserializationError):
        codec.loads(data)
    with pytest.raises(DeserializationError):
        Codec("pickle").loads(data)


@pytest.mark.parametrize("data", [b"", "text", 12, None], ids=["empty", "str", "int", "none"])
def test_non_bytes_input_is_a_deserialization_error(codec: Codec, data: Any) -> None:
    with pytest.raises(DeserializationError):
        codec.loads(data)


def test_malformed_numpy_extensions_are_refused(codec: Codec) -> None:
    np = pytest.importorskip("numpy")

    def ext(payload: list[Any]) -> bytes:
        data: bytes = MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(EXT_NDARRAY, msgpack.packb(payload)))
        return data

    for payload in (
        ["<i8", [3], b"\x00" * 8],  # shape does not match the bytes
        ["|O", [1], b"\x00" * 8],  # object dtype from raw bytes would be pointers
        ["<i8", [-1], b""],
        ["<i8", "3", b"\x00" * 24],
        ["not-a-dtype", [1], b"\x00"],
        ["<i8", [1], "text"],
    ):
        with pytest.raises(DeserializationError):
            codec.loads(ext(payload))
    assert np.array_equal(codec.loads(ext(["<i8", [1], b"\x01" + b"\x00" * 7])), np.array([1]))


def test_every_truncation_of_a_rich_payload_is_a_deserialization_error(codec: Codec) -> None:
    value = {
        "t": (1, {2, 3}, frozenset({"x"})),
        "d": [dt.datetime(2020, 1, 1, tzinfo=IST), dt.date(2020, 1, 1), dt.timedelta(1), dt.time(1)],
        "n": [2**100, decimal.Decimal("1.5"), uuid.UUID(int=5), 1j],
        "e": RemoteError.from_exception(ValueError("x")),
    }
    data = codec.dumps(value)
    assert codec.loads(data) == value
    for cut in range(len(data)):
        with pytest.raises(DeserializationError):
            codec.loads(data[:cut])


def test_random_bytes_never_leak_other_exceptions(codec: Codec) -> None:
    rng = random.Random(1234)
    seed_payload = codec.dumps({"a": (1, 2.5, "x"), "b": [dt.date(2020, 1, 1), {1: b"y"}], "c": {3, 4}})
    for _ in range(3000):
        data = bytearray(seed_payload)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(HEADER_SIZE, len(data))] = rng.randrange(256)
        try:
            codec.loads(bytes(data))
        except DeserializationError:
            pass
    for _ in range(1000):
        try:
            codec.loads(MSGPACK_HEADER + rng.randbytes(rng.randint(0, 40)))
        except DeserializationError:
            pass


def test_deeply_nested_extensions_are_refused_not_crashed(codec: Codec) -> None:
    inner = msgpack.packb([])
    for _ in range(500):  # decoding this naively overflows the C stack (a segfault)
        inner = msgpack.packb([msgpack.ExtType(EXT_TUPLE, inner)])
    crafted = MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(EXT_TUPLE, inner))
    with pytest.raises(DeserializationError, match="nested more than"):
        codec.loads(crafted)

    def nest(levels: int) -> Any:
        value: Any = []
        for _ in range(levels):
            value = (value,)
        return value

    assert codec.loads(codec.dumps(nest(MAX_EXT_DEPTH))) == nest(MAX_EXT_DEPTH)
    with pytest.raises(SerializationError, match="nested more than"):
        codec.dumps(nest(MAX_EXT_DEPTH + 1))


def test_the_deepest_allowed_payload_decodes_on_a_small_thread_stack(codec: Codec) -> None:
    value: Any = []
    for _ in range(MAX_EXT_DEPTH):
        value = (value,)
    data = codec.dumps(value)
    result: list[Any] = []
    old = threading.stack_size(1024 * 1024)
    try:
        thread = threading.Thread(target=lambda: result.append(codec.loads(data)))
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old)
    assert result == [value]


# ------------------------------------------------------------------------------- encode error paths


class Unsupported:
    pass


def _message(fn: Any) -> str:
    with pytest.raises(SerializationError) as info:
        fn()
    assert isinstance(info.value, TypeError), "SerializationError is also a TypeError"
    return str(info.value)


def test_serialization_error_names_args_and_kwargs(codec: Codec) -> None:
    job = {"t": 1, "f": "fit", "a": (1, {"model": Unsupported()}), "k": {}, "et": 0}
    message = _message(lambda: codec.serializer(job))
    name = f"{Unsupported.__module__}.Unsupported"
    assert message.startswith(f"cannot serialize args[1]['model'] of type {name} for the safe wire format (msgpack)")
    assert "TASKQ_SERIALIZER=pickle on clients and workers" in message
    assert "pydantic models" in message

    job = {"t": 1, "f": "fit", "a": (), "k": {"x": Unsupported()}, "et": 0}
    assert _message(lambda: codec.serializer(job)).startswith("cannot serialize kwargs['x'] of type")
    job = {"t": 1, "f": "fit", "a": (1, object()), "k": {}, "et": 0}
    assert "args[1] of type object" in _message(lambda: codec.serializer(job))
    job = {"t": 1, "f": "f", "a": [], "k": {}, "et": 0, "s": True, "r": [Unsupported()]}
    assert "result[0]" in _message(lambda: codec.serializer(job))
    assert JOB_FIELD_NAMES == {"a": "args", "k": "kwargs", "r": "result"}


def test_serialization_error_path_through_structures(codec: Codec) -> None:
    @dataclasses.dataclass
    class Holder:
        name: str
        payload: Any

    class Wrapper(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        inner: Any

    assert "args[0].payload['k'] of type" in _message(
        lambda: codec.dumps([Holder("h", {"k": Unsupported()})], what="args")
    )
    assert "result.inner[2] of type" in _message(
        lambda: codec.dumps(Wrapper(inner=[1, 2, Unsupported()]), what="result")
    )
    assert "value[0][1] of type" in _message(lambda: codec.dumps(((1, Unsupported()),)))
    assert "value['s'] element" in _message(lambda: codec.dumps({"s": {1, Unsupported()}}))
    assert "value key " in _message(lambda: codec.dumps({Unsupported(): 1}))
    assert "value['f'] of type" in _message(lambda: codec.dumps({"f": lambda: 0}))
    assert "kwargs['payload']" in _message(
        lambda: codec.serializer({"a": (), "k": {"payload": {"ok": 1, "bad": {1, 2, lambda: 0}}}})
    )


def test_serialization_error_path_inside_numpy_and_pandas(codec: Codec) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    arr = np.array([1, Unsupported()], dtype=object)
    assert "value[1] of type" in _message(lambda: codec.dumps(arr))
    df = pd.DataFrame({"ok": [1, 2], "bad": pd.Series(["x", Unsupported()], dtype=object)})
    assert "args[0]['bad'].iloc[1] of type" in _message(lambda: codec.dumps([df], what="args"))


def test_reference_cycles_are_named(codec: Codec) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    message = _message(lambda: codec.serializer({"a": (loop,), "k": {}}))
    assert "args[0][1]" in message and "refers back to args[0]" in message and "cycle" in message
    d: dict[str, Any] = {}
    d["self"] = d
    assert "refers back to value" in _message(lambda: codec.dumps(d))
    t: tuple[list[Any], ...] = ([],)
    t[0].append(t)
    assert "result[0][0]" in _message(lambda: codec.dumps(t, what="result"))


def test_too_deep_and_bad_text_are_named(codec: Codec) -> None:
    deep: list[Any] = []
    cur = deep
    for _ in range(2000):
        cur.append([])
        cur = cur[0]
    assert "nested more than 1024 levels" in _message(lambda: codec.dumps(deep))
    assert "value['s']" in _message(lambda: codec.dumps({"s": "\ud800"}))


def test_describe_path(codec: Codec) -> None:
    assert codec.describe_path({"a": (1, object()), "k": {}}, what="job") == "args[1]"
    assert codec.describe_path({"a": (), "k": {"x": [Unsupported()]}}, what="job") == "kwargs['x'][0]"
    assert codec.describe_path([1, 2, {"x": Unsupported()}]) == "value[2]['x']"
    assert codec.describe_path([1, 2, (3,)]) is None


# ------------------------------------------------------------------------------------- RemoteError


class HttpError(Exception):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def _raise_value_error() -> None:
    raise ValueError("bad row 7")


def test_remote_error_from_a_real_exception() -> None:
    try:
        _raise_value_error()
    except ValueError as exc:
        err = RemoteError.from_exception(exc)
    assert err.type == "ValueError" and err.message == "bad row 7" and err.kind == "error"
    assert err.traceback.startswith("Traceback (most recent call last)")
    assert "_raise_value_error" in err.traceback and "ValueError: bad row 7" in err.traceback
    assert err.details["args"] == ["'bad row 7'"]
    assert str(err) == "ValueError: bad row 7"

    try:
        raise HttpError("upstream failed", 503)
    except HttpError as exc:
        http = RemoteError.from_exception(exc, kind="timeout", traceback="given")
    assert http.type == f"{HttpError.__module__}.HttpError"
    assert http.details["status"] == 503 and http.kind == "timeout" and http.traceback == "given"


def test_remote_error_traceback_keeps_the_tail() -> None:
    err = RemoteError.from_exception(RuntimeError("x"), traceback="head" + "x" * 100_000 + "TAIL")
    assert len(err.traceback) < TRACEBACK_LIMIT + 200
    assert err.traceback.endswith("TAIL") and "dropped" in err.traceback


def test_remote_error_survives_odd_exceptions() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    err = RemoteError.from_exception(Unprintable())
    assert "unprintable" in err.message
    assert RemoteError.from_exception(KeyboardInterrupt()).type == "KeyboardInterrupt"


def test_exceptions_travel_as_remote_errors(codec: Codec) -> None:
    try:
        _raise_value_error()
    except ValueError as exc:
        back = codec.loads(codec.dumps({"error": exc, "errors": [HttpError("x", 404)]}))
    err = back["error"]
    assert isinstance(err, RemoteError) and not isinstance(err, BaseException)
    assert err.type == "ValueError" and "_raise_value_error" in err.traceback
    assert back["errors"][0].details["status"] == 404
    explicit = RemoteError("X", "m", "tb", kind="lost", details={"n": 1})
    assert codec.loads(codec.dumps(explicit)) == explicit


def test_an_exception_carrying_a_remote_error_travels_as_that_error(codec: Codec) -> None:
    class Carrier(Exception):
        def __init__(self, error: RemoteError) -> None:
            self.remote_error = error
            super().__init__(str(error))

    carried = RemoteError("ValueError", "bad row 4", "Traceback ...", kind="error", details={"args": []})
    assert codec.loads(codec.dumps(Carrier(carried))) == carried
    assert Codec("pickle").loads(Codec("pickle").dumps(Carrier(carried))) == carried


def test_decoding_a_remote_error_imports_nothing(codec: Codec) -> None:
    payload = [f"never_imported_module_{os.getpid()}.Boom", "m", "", "error", {}]
    data = MSGPACK_HEADER + msgpack.packb(msgpack.ExtType(EXT_REMOTE_ERROR, msgpack.packb(payload)))
    err = codec.loads(data)
    assert isinstance(err, RemoteError) and err.type == payload[0]
    assert not any(name.startswith("never_imported_module") for name in sys.modules)


# ------------------------------------------------------------------------------------------ arq


@pytest.mark.parametrize("fmt", ["msgpack", "pickle"])
def test_arq_job_round_trip(fmt: str) -> None:
    codec = Codec(fmt)  # type: ignore[arg-type]
    args = (1, "two", [3.0], (4, 5), dt.datetime(2024, 1, 1, tzinfo=UTC))
    kwargs = {"x": {"nested": (1,)}, "when": dt.date(2024, 1, 2)}
    raw = serialize_job("process", args, kwargs, 2, 1_700_000_000_000, serializer=codec.serializer)
    job = deserialize_job(raw, deserializer=codec.deserializer)
    assert job.function == "process" and job.job_try == 2
    assert_identical(job.args, args)
    assert_identical(job.kwargs, kwargs)
    assert job.enqueue_time == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_arq_result_round_trip_including_an_exception(codec: Codec) -> None:
    common = dict(
        function="process",
        args=(1,),
        kwargs={"k": 2},
        job_try=1,
        enqueue_time_ms=1_000,
        start_ms=2_000,
        finished_ms=3_000,
        ref="job-1:process",
        queue_name="arq:queue",
        job_id="job-1",
    )
    raw = serialize_result(success=True, result={"rows": (1, 2)}, serializer=codec.serializer, **common)  # type: ignore[arg-type]
    assert raw is not None
    res = deserialize_result(raw, deserializer=codec.deserializer)
    assert res.success and res.result == {"rows": (1, 2)} and res.args == (1,) and res.job_id == "job-1"

    try:
        _raise_value_error()
    except ValueError as exc:
        raw = serialize_result(success=False, result=exc, serializer=codec.serializer, **common)  # type: ignore[arg-type]
    assert raw is not None
    res = deserialize_result(raw, deserializer=codec.deserializer)
    assert not res.success
    assert isinstance(res.result, RemoteError)
    assert res.result.type == "ValueError" and res.result.message == "bad row 7"
    assert "_raise_value_error" in res.result.traceback


def test_arq_falls_back_when_a_result_cannot_be_encoded(codec: Codec) -> None:
    raw = serialize_result("f", (), {}, 1, 0, True, Unsupported(), 0, 0, "ref", "q", "id", serializer=codec.serializer)
    assert raw is not None
    res = deserialize_result(raw, deserializer=codec.deserializer)
    assert res.success is False and res.result == "unable to serialize result"


def test_arq_refuses_a_pickled_job_through_the_codec(codec: Codec, tmp_path: pathlib.Path) -> None:
    from arq.jobs import DeserializationError as ArqDeserializationError

    marker = tmp_path / "pwned-arq"
    raw = pickle.dumps({"t": 1, "f": "add", "a": (Marker(marker),), "k": {}, "et": 0})
    with pytest.raises(ArqDeserializationError) as info:
        deserialize_job(raw, deserializer=codec.deserializer)
    assert isinstance(info.value.__cause__, DeserializationError)
    assert not marker.exists()


def test_deserializer_wants_a_job_dict(codec: Codec) -> None:
    with pytest.raises(DeserializationError, match="expected an arq job dict"):
        codec.deserializer(codec.dumps([1, 2]))


# ------------------------------------------------------------------------------------- performance


def _best_us(fn: Any, loops: int = 3000, rounds: int = 15) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops * 1e6)
    return best


def test_overhead_report(codec: Codec) -> None:
    """Prints encode+decode time per typical job vs plain msgpack and pickle (asserts nothing about speed)."""
    job = {
        "t": 1,
        "f": "process_item",
        "a": ("hello", 42, 3.14, [1, 2, 3]),
        "k": {"name": "x", "flag": True, "n": 10},
        "et": 1_732_867_200_000,
    }
    plain = {"name": "report", "rows": [1, 2, 3, 4], "scale": 0.5, "tags": ["a", "b"], "n": 10}
    for label, value, enc, dec in (
        ("arq job dict", job, codec.serializer, codec.deserializer),
        ("plain dict", plain, codec.dumps, codec.loads),
    ):
        base = _best_us(lambda v=value: msgpack.unpackb(msgpack.packb(v), strict_map_key=False))
        ours = _best_us(lambda v=value, e=enc, d=dec: d(e(v)))
        pick = _best_us(lambda v=value: pickle.loads(pickle.dumps(v)))
        print(
            f"\nFIGURE codec_{label.replace(' ', '_')}: msgpack {base:.2f}us, taskq {ours:.2f}us "
            f"({(ours / base - 1) * 100:+.0f}%), pickle {pick:.2f}us"
        )
