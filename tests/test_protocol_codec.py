"""The msgpack codec with numpy arrays as ext type 1: round-trips, zero-copy decode, refusals."""

from __future__ import annotations

import gc
import math
import struct
import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from manta_mqtt.protocol import codec
from manta_mqtt.protocol.codec import NDARRAY_EXT, CodecError

INT_MIN = -(2**63)
UINT_MAX = 2**64 - 1


# --- helpers -----------------------------------------------------------------------------------


def same(a, b) -> bool:
    """Structural equality where NaN equals NaN and -0.0 differs from 0.0 (types must match too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def assert_same_array(original: np.ndarray, decoded: np.ndarray) -> None:
    """Same dtype, same shape and bit-identical contents (so NaN payloads compare equal)."""
    assert isinstance(decoded, np.ndarray)
    assert decoded.dtype == original.dtype
    assert decoded.dtype.str == original.dtype.str
    assert decoded.shape == original.shape
    assert decoded.tobytes() == np.ascontiguousarray(original).tobytes()


def ext(payload: bytes, code: int = NDARRAY_EXT) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


def ndarray_ext(descr: bytes, shape: tuple[int, ...], raw: bytes) -> bytes:
    header = struct.pack(f"<B{len(descr)}sB{len(shape)}Q", len(descr), descr, len(shape), *shape)
    return ext(header + raw)


def decode_or_codec_error(data: bytes):
    """Decode ``data``; a CodecError is fine, any other exception fails the test."""
    try:
        return codec.decode(data)
    except CodecError:
        return None


# --- plain values ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN, max_value=UINT_MAX)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.binary(max_size=64)
    | st.text(max_size=32)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)


@given(values)
def test_nested_values_round_trip(value):
    """Nested dicts/lists of None, bools, 64-bit ints, floats (NaN, inf, -0.0), bytes and str survive."""
    assert same(codec.decode(codec.encode(value)), value)


@pytest.mark.parametrize("value", [INT_MIN, INT_MIN + 1, -1, 0, 2**63 - 1, 2**63, UINT_MAX])
def test_int_bounds_round_trip(value):
    """Ints at the int64/uint64 bounds keep their exact value."""
    decoded = codec.decode(codec.encode(value))
    assert type(decoded) is int
    assert decoded == value


@pytest.mark.parametrize("value", [INT_MIN - 1, UINT_MAX + 1, 10**30, -(10**30)])
def test_ints_outside_64_bits_are_refused(value):
    """Ints that msgpack cannot represent raise CodecError, not OverflowError."""
    with pytest.raises(CodecError):
        codec.encode(value)


def test_bytes_and_str_stay_distinct():
    """bytes decode as bytes and str as str (bin type is used, raw=False on decode)."""
    decoded = codec.decode(codec.encode({"b": b"\x00\xff", "s": "\u00e9t\u00e9"}))
    assert decoded == {"b": b"\x00\xff", "s": "\u00e9t\u00e9"}
    assert type(decoded["b"]) is bytes
    assert type(decoded["s"]) is str


def test_numpy_scalars_encode_as_python_values():
    """numpy scalar types travel as their plain Python value."""
    decoded = codec.decode(codec.encode([np.int64(-5), np.uint64(UINT_MAX), np.float32(1.5), np.bool_(True)]))
    assert decoded == [-5, UINT_MAX, 1.5, True]
    assert [type(v) for v in decoded] == [int, int, float, bool]


def test_decode_accepts_bytearray_and_memoryview():
    """decode takes any bytes-like buffer."""
    data = codec.encode({"a": [1, 2.5, np.arange(3)]})
    for buf in (bytearray(data), memoryview(data)):
        decoded = codec.decode(buf)
        assert decoded["a"][:2] == [1, 2.5]
        assert decoded["a"][2].tolist() == [0, 1, 2]


@pytest.mark.parametrize("value", [object(), 1j, [object()], {"k": {object()}}, type, {(1, 2): 3, "x": object()}])
def test_unencodable_values_are_refused(value):
    """Values msgpack cannot carry raise CodecError."""
    with pytest.raises(CodecError):
        codec.encode(value)


# --- numpy arrays ------------------------------------------------------------------------------

supported_dtypes = (
    hnp.boolean_dtypes()
    | hnp.integer_dtypes(endianness="?")
    | hnp.unsigned_integer_dtypes(endianness="?")
    | hnp.floating_dtypes(endianness="?", sizes=(16, 32, 64))
    | hnp.complex_number_dtypes(endianness="?", sizes=(64, 128))
    | hnp.datetime64_dtypes(endianness="?")
    | hnp.timedelta64_dtypes(endianness="?")
    | hnp.byte_string_dtypes(min_len=1, max_len=8)
    | hnp.unicode_string_dtypes(endianness="?", min_len=1, max_len=8)
)
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
arrays = supported_dtypes.flatmap(lambda dt: hnp.arrays(dt, shapes))


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(arrays)
def test_arrays_round_trip(array):
    """Arrays of every supported dtype, byte order and shape (0-d and 0-size included) round-trip."""
    decoded = codec.decode(codec.encode(array))
    assert_same_array(array, decoded)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(array=supported_dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=2, max_dims=3))))
def test_non_contiguous_and_fortran_arrays_round_trip(array):
    """Sliced, transposed and Fortran-ordered inputs decode with the same values in C order."""
    variants = [array[::2], array[:, ::-1], array.T, np.asfortranarray(array), np.swapaxes(array, 0, -1)]
    for variant in variants:
        decoded = codec.decode(codec.encode(variant))
        assert_same_array(variant, decoded)
        assert decoded.flags.c_contiguous


@pytest.mark.parametrize(
    "dtype",
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "datetime64[ns]",
        "datetime64[D]",
        "timedelta64[ms]",
        "S5",
        "U5",
        ">i4",
        ">f8",
    ],
)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (4,), (2, 3)], ids=["0d", "empty", "empty3d", "1d", "2d"])
def test_every_dtype_and_shape(dtype, shape):
    """Each named dtype keeps dtype and shape, including 0-d and zero-size arrays."""
    array = np.arange(int(np.prod(shape)), dtype=np.int64).astype(dtype).reshape(shape)
    assert_same_array(array, codec.decode(codec.encode(array)))


def test_float_specials_survive_bitwise():
    """NaN, +-inf and -0.0 inside float and complex arrays come back bit for bit."""
    for dtype in ("float16", "float32", "float64", "complex64", "complex128"):
        array = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0], dtype=dtype)
        assert_same_array(array, codec.decode(codec.encode(array)))


@given(arrays)
def test_decoded_arrays_are_read_only_views(array):
    """Decoded arrays do not own their data (views over the decoded buffer) and cannot be written."""
    decoded = codec.decode(codec.encode({"x": array}))["x"]
    assert decoded.base is not None
    assert not decoded.flags.owndata
    assert not decoded.flags.writeable
    if decoded.size:
        with pytest.raises(ValueError, match="read-only"):
            decoded.reshape(-1)[0] = decoded.reshape(-1)[0]
    # a copy is the documented way to get a writable array
    assert decoded.copy().flags.writeable


def test_arrays_nested_in_containers():
    """Arrays inside dicts and lists decode in place, next to plain values."""
    value = {"w": [np.arange(6, dtype="f4").reshape(2, 3), np.array(7)], "meta": {"n": 2}}
    decoded = codec.decode(codec.encode(value))
    assert decoded["meta"] == {"n": 2}
    assert_same_array(value["w"][0], decoded["w"][0])
    assert_same_array(value["w"][1], decoded["w"][1])


def test_huge_array_round_trips():
    """A 64 MiB float32 array round-trips intact and without an extra copy on decode."""
    array = np.arange(16 * 1024 * 1024, dtype=np.float32)
    assert array.nbytes == 64 * 1024 * 1024
    data = codec.encode(array)
    assert len(data) > array.nbytes
    decoded = codec.decode(data)
    assert decoded.dtype == array.dtype
    assert decoded.shape == array.shape
    assert not decoded.flags.owndata
    assert np.array_equal(decoded, array)


@pytest.mark.parametrize(
    "array",
    [
        np.array([1, "a", None], dtype=object),
        np.empty((0,), dtype=object),
        np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),
        np.zeros(2, dtype=[("nested", [("x", "u1")])]),
        np.zeros(2, dtype=[("sub", "<i4", (3,))]),
        np.zeros(2, dtype=[("o", object)]),
    ],
    ids=["object", "empty-object", "structured", "nested-structured", "structured-subarray", "structured-object"],
)
def test_object_and_structured_dtypes_are_refused(array):
    """Object and structured dtypes cannot be encoded (they would not be safe or portable)."""
    with pytest.raises(CodecError):
        codec.encode(array)
    with pytest.raises(CodecError):
        codec.encode({"nested": [array]})


def test_too_many_dimensions_are_refused():
    """Arrays of more than 32 dimensions raise CodecError."""
    with pytest.raises(CodecError):
        codec.encode(np.zeros((1,) * 33))


# --- malformed input ---------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=256))
def test_garbage_raises_only_codec_error(data):
    """Random bytes either decode or raise CodecError, never any other exception."""
    decode_or_codec_error(data)


@given(values)
def test_truncated_encodings_raise_codec_error(value):
    """Every strict prefix of a valid encoding is incomplete and raises CodecError."""
    data = codec.encode(value)
    for end in sorted({0, 1, len(data) // 2, len(data) - 1}):
        if end < len(data):
            with pytest.raises(CodecError):
                codec.decode(data[:end])


def test_truncated_array_encoding_raises_codec_error():
    """Cutting an encoded array anywhere raises CodecError."""
    data = codec.encode({"a": np.arange(10, dtype="i2").reshape(2, 5)})
    for end in range(len(data)):
        with pytest.raises(CodecError):
            codec.decode(data[:end])


def test_trailing_bytes_raise_codec_error():
    """Extra bytes after one complete value are refused."""
    with pytest.raises(CodecError):
        codec.decode(codec.encode({"a": 1}) + b"\x00")


@given(value=values, data=st.data())
def test_corrupted_encodings_raise_only_codec_error(value, data):
    """A valid encoding with one byte changed decodes or raises CodecError, nothing else."""
    encoded = bytearray(codec.encode(value))
    pos = data.draw(st.integers(0, len(encoded) - 1))
    encoded[pos] = data.draw(st.integers(0, 255))
    decode_or_codec_error(bytes(encoded))


@given(code=st.integers(0, 127).filter(lambda c: c != NDARRAY_EXT), payload=st.binary(max_size=32))
def test_unknown_ext_types_raise_codec_error(code, payload):
    """Ext types other than 1 (0..127) are refused with CodecError."""
    with pytest.raises(CodecError, match="extension type"):
        codec.decode(ext(payload, code))
    with pytest.raises(CodecError):
        codec.decode(msgpack.packb({"x": [msgpack.ExtType(code, payload)]}))


@pytest.mark.parametrize("code", [-128, -100, -2])
def test_unknown_negative_ext_types_raise_codec_error(code):
    """Negative ext types (other than msgpack's reserved -1 timestamp) are refused with CodecError."""
    raw = b"\xd4" + struct.pack("b", code) + b"\x00"  # fixext 1
    with pytest.raises(CodecError):
        codec.decode(raw)


@pytest.mark.parametrize(
    ("descr", "shape", "raw"),
    [
        (b"<i4", (3,), b"\x00" * 11),  # one byte short
        (b"<i4", (3,), b"\x00" * 13),  # one byte long
        (b"<i4", (2, 2), b"\x00" * 12),  # shape says 16
        (b"<f8", (0,), b"\x00" * 8),  # empty shape with data
        (b"<f8", (), b""),  # 0-d needs one item
        (b"<f8", (2**40, 2**40), b""),  # absurd shape
        (b"<f8", (0, 2**63), b""),  # zero-size but beyond numpy's limits
        (b"<q9", (1,), b"\x00" * 8),  # bad dtype string
        (b"zzz", (1,), b"\x00" * 8),
        (b"", (1,), b"\x00" * 8),
        (b"\xff\xfe", (1,), b"\x00" * 8),  # not ASCII
        (b"|O", (1,), b"\x00" * 8),  # object dtype
        (b"O", (0,), b""),
        (b"i4,i4", (1,), b"\x00" * 8),  # structured dtype
        (b"[('a', '<i4')]", (1,), b"\x00" * 4),
        (b"(2,)<i4", (2,), b"\x00" * 16),  # subarray dtype
    ],
)
def test_malformed_ndarray_ext_raises_codec_error(descr, shape, raw):
    """Wrong data size for the shape, bad/unsafe dtype strings all raise CodecError."""
    with pytest.raises(CodecError):
        codec.decode(ndarray_ext(descr, shape, raw))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x03",  # dtype length, then nothing
        b"\x03<i4",  # no ndim
        b"\x03<i4\x02" + b"\x00" * 8,  # ndim 2 but one dim
        b"\x20<i4\x01",  # dtype length beyond the payload
        b"\x03<i4\xff",  # ndim 255 with no shape
    ],
)
def test_truncated_ndarray_header_raises_codec_error(payload):
    """An ndarray ext whose header is cut short raises CodecError."""
    with pytest.raises(CodecError):
        codec.decode(ext(payload))


@settings(max_examples=300)
@given(st.binary(max_size=96))
def test_random_ndarray_ext_raises_only_codec_error(payload):
    """Random bytes in an ext-1 payload decode to an array or raise CodecError, nothing else."""
    result = decode_or_codec_error(ext(payload))
    assert result is None or isinstance(result, np.ndarray)


@given(dtype=supported_dtypes, shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), delta=st.integers(-3, 3))
def test_ndarray_ext_size_must_match_shape(dtype, shape, delta):
    """A payload that is not exactly prod(shape) * itemsize bytes raises CodecError."""
    size = int(np.prod(shape)) * dtype.itemsize + delta
    if delta == 0 or size < 0:
        return
    with pytest.raises(CodecError):
        codec.decode(ndarray_ext(dtype.str.encode(), shape, b"\x00" * size))


def test_oversized_message_is_refused():
    """Input beyond MAX_MESSAGE_BYTES is refused before msgpack sees it."""

    class Huge(bytes):
        def __len__(self) -> int:
            return codec.MAX_MESSAGE_BYTES + 1

    with pytest.raises(CodecError, match="exceeds"):
        codec.decode(Huge(b"\xc0"))


# --- zero-copy decoding (msgspec) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdc\xff\xff", b"\xde\xff\xff", b"\xc6\xff\xff\xff\xff"],
    ids=["array32", "map32", "array16", "map16", "bin32"],
)
def test_declared_lengths_beyond_the_input_fail_without_allocating(header):
    """A header claiming 2**32 - 1 elements (or 65535, or 4 GiB of bin) is refused before allocating."""
    data = header + b"\x00" * 64
    tracemalloc.start()
    try:
        with pytest.raises(CodecError):
            codec.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_an_array_as_map_key_is_refused():
    """msgpack-python refused a list key (unhashable); the decoder must not turn it into a tuple."""
    with pytest.raises(CodecError):
        codec.decode(b"\x81\x92\x01\x02\x03")  # {[1, 2]: 3}
    with pytest.raises(CodecError):
        codec.decode(b"\x92\x81\x01\x02\x81\x01\x91\x81\x92\x03\x04\x05")  # [{1: 2}, {1: [{[3, 4]: 5}]}]
    with pytest.raises(CodecError):
        codec.decode(b"\x92\x01\x81\x91\xc0\x02")  # [1, {[None]: 2}]


def test_non_str_scalar_keys_still_decode():
    """Map keys may be ints, bytes, floats, bools or None (strict_map_key=False before): still so."""
    value = {1: "a", b"k": 2, 1.5: None, None: [1], False: {"n": -1}}
    assert codec.decode(msgpack.packb(value, use_bin_type=True)) == value


@pytest.mark.parametrize("where", ["top", "nested"])
def test_the_msgpack_timestamp_extension_is_refused(where):
    """ext -1 (timestamp) never comes from the encoder; it is refused rather than made a datetime."""
    stamp = msgpack.Timestamp(1, 0)
    data = msgpack.packb(stamp if where == "top" else {"a": [1, {"t": stamp}]}, datetime=False)
    with pytest.raises(CodecError):
        codec.decode(data)


def test_arrays_decoded_from_a_bytearray_are_read_only_views_of_it():
    """Over a writable buffer the arrays are still read-only, and share its memory (no copy)."""
    buffer = bytearray(codec.encode({"w": np.arange(4, dtype="<i4")}))
    decoded = codec.decode(buffer)["w"]
    assert not decoded.flags.writeable
    assert np.shares_memory(decoded, np.frombuffer(buffer, dtype=np.uint8))


def test_arrays_keep_the_input_alive():
    """The input may be dropped right after decoding: the arrays hold a reference to it."""
    decoded = codec.decode(codec.encode({"w": np.arange(1000, dtype="<f8")}))
    gc.collect()
    assert decoded["w"].tolist() == list(map(float, range(1000)))
