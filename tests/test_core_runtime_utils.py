"""Task-side helpers: numpy/dict byte conversions (runtime.utils) and read-only datasets (Local)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from manta_mqtt.runtime.local import Local
from manta_mqtt.runtime.utils import bytes_to_dict, bytes_to_numpy, dict_to_bytes, numpy_to_bytes

# --- numpy_to_bytes / bytes_to_numpy ---------------------------------------------------------


def test_numpy_round_trip_array() -> None:
    """An array round-trips with dtype and shape intact."""
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = bytes_to_numpy(numpy_to_bytes(array))
    assert back.dtype == np.float32
    assert back.shape == (3, 4)
    np.testing.assert_array_equal(back, array)


def test_numpy_round_trip_list_and_scalar() -> None:
    """A list (and a numpy scalar) converts through np.asarray."""
    np.testing.assert_array_equal(bytes_to_numpy(numpy_to_bytes([[1, 2], [3, 4]])), np.array([[1, 2], [3, 4]]))
    scalar = bytes_to_numpy(numpy_to_bytes(np.float64(2.5)))
    assert scalar.shape == ()
    assert scalar == 2.5


def test_numpy_bytes_are_real_npy() -> None:
    """The bytes are a standard .npy file that plain np.load reads (portable to Manta)."""
    array = np.linspace(0, 1, 5)
    data = numpy_to_bytes(array)
    assert isinstance(data, bytes)
    assert data.startswith(b"\x93NUMPY")
    np.testing.assert_array_equal(np.load(io.BytesIO(data)), array)


def test_numpy_round_trip_nested_dict() -> None:
    """Dicts are converted recursively, keeping their keys and nesting."""
    value = {"layer1": {"w": np.ones((2, 2)), "b": [0.5, 0.25]}, "head": np.zeros(3, dtype=np.int16)}
    encoded = numpy_to_bytes(value)
    assert set(encoded) == {"layer1", "head"}
    assert isinstance(encoded["layer1"]["w"], bytes)
    assert isinstance(encoded["head"], bytes)
    back = bytes_to_numpy(encoded)
    np.testing.assert_array_equal(back["layer1"]["w"], np.ones((2, 2)))
    np.testing.assert_array_equal(back["layer1"]["b"], np.array([0.5, 0.25]))
    assert back["head"].dtype == np.int16
    assert bytes_to_numpy(numpy_to_bytes({})) == {}


def test_bytes_to_numpy_accepts_bytearray_and_memoryview() -> None:
    """Bytes-like inputs are all accepted."""
    data = numpy_to_bytes(np.arange(4))
    np.testing.assert_array_equal(bytes_to_numpy(bytearray(data)), np.arange(4))
    np.testing.assert_array_equal(bytes_to_numpy(memoryview(data)), np.arange(4))


@pytest.mark.parametrize("value", [3, 2.5, "text", b"bytes", None, (1, 2), {1, 2}, {"ok": [1], "bad": "x"}])
def test_numpy_to_bytes_refuses_other_types(value: object) -> None:
    """Only arrays, lists, numpy scalars and dicts of those are converted."""
    with pytest.raises(ValueError):
        numpy_to_bytes(value)


@pytest.mark.parametrize("value", [3, "text", None, [b"x"], np.arange(3)])
def test_bytes_to_numpy_refuses_other_types(value: object) -> None:
    """bytes_to_numpy takes bytes (or dicts of them) only."""
    with pytest.raises(ValueError):
        bytes_to_numpy(value)


def test_numpy_to_bytes_refuses_object_arrays() -> None:
    """Object arrays would need pickle, which is refused on the way out."""
    with pytest.raises(ValueError):
        numpy_to_bytes(np.array([{"a": 1}, None], dtype=object))


def test_bytes_to_numpy_refuses_pickled_arrays() -> None:
    """A pickled object array (arbitrary code on load) is refused on the way in."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        bytes_to_numpy(buffer.getvalue())


def test_bytes_to_numpy_refuses_garbage() -> None:
    """Bytes that are not .npy raise instead of returning something."""
    with pytest.raises(ValueError):
        bytes_to_numpy(b"definitely not npy")


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int8, np.int64, np.uint16, np.bool_, np.complex64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    )
)
def test_numpy_round_trip_property(array: np.ndarray) -> None:
    """Any plain numeric array round-trips bit for bit (NaNs included)."""
    back = bytes_to_numpy(numpy_to_bytes(array))
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    assert back.tobytes() == array.tobytes()


# --- dict_to_bytes / bytes_to_dict -----------------------------------------------------------


def test_dict_round_trip() -> None:
    """dict_to_bytes/bytes_to_dict round-trip msgpack values, including numpy arrays."""
    value = {"lr": 0.01, "epoch": 3, "name": "cnn", "ok": True, "ids": ["n1", "n2"], "raw": b"\x00\x01", "none": None}
    back = bytes_to_dict(dict_to_bytes(value))
    assert back == value
    weights = bytes_to_dict(dict_to_bytes({"w": np.arange(6.0).reshape(2, 3)}))
    np.testing.assert_array_equal(weights["w"], np.arange(6.0).reshape(2, 3))
    assert isinstance(dict_to_bytes({}), bytes)


# --- Local -----------------------------------------------------------------------------------


@pytest.fixture
def datasets(tmp_path: Path) -> dict[str, str]:
    """A file dataset, a folder dataset with a sub-folder, and a secret file beside them."""
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("line one\nline two\n")
    (tmp_path / "data" / "sub" / "b.bin").write_bytes(b"\x00\x01\x02")
    np.save(tmp_path / "data" / "arr.npy", np.arange(5))
    np.savez(tmp_path / "data" / "pack.npz", x=np.ones(2), y=np.zeros(3))
    (tmp_path / "data2").mkdir()
    (tmp_path / "data2" / "secret.txt").write_text("secret")
    (tmp_path / "single.csv").write_text("a,b\n1,2\n")
    (tmp_path / "secret.txt").write_text("secret")
    return {"images": str(tmp_path / "data"), "table": str(tmp_path / "single.csv")}


@pytest.fixture
def local(datasets: dict[str, str]) -> Local:
    return Local(datasets=datasets)


def test_local_without_channel(datasets: dict[str, str]) -> None:
    """Local can be built from a datasets mapping alone (no task channel needed)."""
    assert set(Local(datasets=datasets).datasets) == {"images", "table"}
    assert Local(datasets={}).datasets == {}


def test_get_binary_data_file_dataset(local: Local) -> None:
    """A file dataset is returned whole as a BytesIO positioned at 0."""
    data = local.get_binary_data("table")
    assert isinstance(data, io.BytesIO)
    assert data.tell() == 0
    assert data.read() == b"a,b\n1,2\n"


def test_get_binary_data_inside_folder(local: Local) -> None:
    """A file inside a folder dataset is addressed as name/sub/file."""
    data = local.get_binary_data("images/sub/b.bin")
    assert data.tell() == 0
    assert data.getvalue() == b"\x00\x01\x02"
    assert local.get_binary_data("images/a.txt").read().startswith(b"line one")


@pytest.mark.parametrize(
    "name",
    [
        "images/../../etc/passwd",
        "images/../secret.txt",
        "images/sub/../../secret.txt",
        "images/../data2/secret.txt",  # a sibling whose name starts like the dataset folder
        "images//etc/passwd",  # an absolute path after the dataset name
        "images/..",
    ],
)
def test_path_traversal_refused(local: Local, name: str) -> None:
    """Paths escaping the dataset folder raise PermissionError."""
    with pytest.raises(PermissionError):
        local.get_binary_data(name)


def test_symlink_escape_refused(local: Local, datasets: dict[str, str], tmp_path: Path) -> None:
    """A symlink inside a dataset that points outside it is refused too."""
    os.symlink(tmp_path / "secret.txt", Path(datasets["images"]) / "link.txt")
    with pytest.raises(PermissionError):
        local.get_binary_data("images/link.txt")


def test_dotdot_that_stays_inside_is_allowed(local: Local) -> None:
    """A path with .. that still ends inside the dataset is fine."""
    assert local.get_binary_data("images/sub/../a.txt").read().startswith(b"line one")


def test_unknown_dataset_lists_known(local: Local) -> None:
    """An unknown dataset raises FileNotFoundError naming the known datasets."""
    with pytest.raises(FileNotFoundError) as info:
        local.get_binary_data("nope/file.txt")
    assert "images" in str(info.value)
    assert "table" in str(info.value)
    with pytest.raises(FileNotFoundError, match="none"):
        Local(datasets={}).get_binary_data("x")


def test_missing_file_in_dataset(local: Local) -> None:
    """A missing file inside a known folder dataset is a FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        local.get_binary_data("images/missing.bin")


def test_folder_is_not_binary_data(local: Local) -> None:
    """Asking for a folder (the dataset itself or a sub-folder) raises IsADirectoryError."""
    with pytest.raises(IsADirectoryError):
        local.get_binary_data("images")
    with pytest.raises(IsADirectoryError):
        local.get_binary_data("images/sub")


def test_get_numpy_data_npy_and_npz(local: Local) -> None:
    """.npy loads as an array, .npz as a mapping of arrays."""
    np.testing.assert_array_equal(local.get_numpy_data("images/arr.npy"), np.arange(5))
    with local.get_numpy_data("images/pack.npz") as pack:
        assert sorted(pack.files) == ["x", "y"]
        np.testing.assert_array_equal(pack["y"], np.zeros(3))


def test_get_numpy_data_refuses_pickles(local: Local, datasets: dict[str, str]) -> None:
    """A pickled .npy in a dataset is refused."""
    np.save(Path(datasets["images"]) / "obj.npy", np.array([None, {}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        local.get_numpy_data("images/obj.npy")


def test_list_dir(local: Local) -> None:
    """list_dir gives sorted name/relative entries, for the dataset and for a sub-folder."""
    assert local.list_dir("images") == ["images/a.txt", "images/arr.npy", "images/pack.npz", "images/sub"]
    assert local.list_dir("images/sub") == ["images/sub/b.bin"]
    assert local.list_dir("images/sub/") == ["images/sub/b.bin"]
    with pytest.raises(PermissionError):
        local.list_dir("images/..")


def test_exists(local: Local) -> None:
    """exists is True for datasets and files in them, False for missing, unknown or escaping names."""
    assert local.exists("images")
    assert local.exists("table")
    assert local.exists("images/sub/b.bin")
    assert local.exists("images/sub")
    assert not local.exists("images/nothing.txt")
    assert not local.exists("unknown")
    assert not local.exists("unknown/a.txt")
    assert not local.exists("images/../secret.txt")
    assert not local.exists("images/../../etc/passwd")
    assert not local.exists("")


def test_read_file_lines(local: Local, datasets: dict[str, str]) -> None:
    """read_file_lines returns a text stream over the file, honouring encoding and errors."""
    assert local.read_file_lines("images/a.txt").readlines() == ["line one\n", "line two\n"]
    assert list(local.read_file_lines("table")) == ["a,b\n", "1,2\n"]
    latin = Path(datasets["images"]) / "latin.txt"
    latin.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):
        local.read_file_lines("images/latin.txt")
    assert local.read_file_lines("images/latin.txt", encoding="latin-1").read() == "café\n"
    assert local.read_file_lines("images/latin.txt", errors="replace").read() == "caf\ufffd\n"
    with pytest.raises(PermissionError):
        local.read_file_lines("images/../secret.txt")


def test_read_file_lines_newlines(local: Local, datasets: dict[str, str]) -> None:
    """Like open(): universal newlines by default, untranslated with newline=''."""
    (Path(datasets["images"]) / "crlf.txt").write_bytes(b"a\r\nb\rc\n")
    assert local.read_file_lines("images/crlf.txt").readlines() == ["a\n", "b\n", "c\n"]
    assert local.read_file_lines("images/crlf.txt", newline="").readlines() == ["a\r\n", "b\r", "c\n"]
