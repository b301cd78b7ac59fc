"""Swarm definition core: Module (code + datasets), Task (scheduling rules), SwarmGraph, load_swarm."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from manta_mqtt.protocol.chunking import sha256
from manta_mqtt.swarm import Module, Swarm, Task, load_swarm
from manta_mqtt.swarm.graph import SwarmGraph
from manta_mqtt.swarm.module import relative_to

# --- helpers ---------------------------------------------------------------------------------


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def make_module(tmp_path: Path, name: str, body: str = "def main():\n    return 1\n") -> Module:
    return Module(write(tmp_path / f"{name}.py", body))


def make_package(root: Path, name: str = "pkg") -> Path:
    write(root / name / "__init__.py", "from .helper import VALUE\n\ndef main():\n    return VALUE * 2\n")
    write(root / name / "helper.py", "VALUE = 21\n")
    write(root / name / "sub" / "__init__.py", "")
    write(root / name / "sub" / "deep.py", "X = 1\n")
    return root / name


def run_from_zip(tmp_path: Path, data: bytes, entry: str) -> str:
    """Import ``entry`` from a zip holding ``data`` in a fresh interpreter and print main()."""
    archive = tmp_path / f"bundle-{sha256(data)[:8]}.zip"
    archive.write_bytes(data)
    code = f"import sys; sys.path.insert(0, {str(archive)!r}); import {entry}; print({entry}.main())"
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


@pytest.fixture
def mod_a(tmp_path: Path) -> Module:
    return make_module(tmp_path, "a")


# --- Module ----------------------------------------------------------------------------------


def test_module_from_py_file(tmp_path: Path) -> None:
    """A .py file becomes a module named after its stem, with an absolute resolved path."""
    path = write(tmp_path / "worker.py", "def main():\n    pass\n")
    module = Module(path, datasets=["mnist"])
    assert module.path == path.resolve()
    assert module.entry == "worker"
    assert module.name == "worker"
    assert module.datasets == ["mnist"]


def test_module_explicit_name_and_default_datasets(tmp_path: Path) -> None:
    """An explicit name overrides the stem (the import entry stays the stem); datasets default to []."""
    module = Module(write(tmp_path / "worker.py"), name="trainer", datasets=None)  # type: ignore[arg-type]
    assert module.name == "trainer"
    assert module.entry == "worker"
    assert module.datasets == []


def test_module_from_package_folder(tmp_path: Path) -> None:
    """A folder with __init__.py is a package module named after the folder."""
    folder = make_package(tmp_path)
    module = Module(folder)
    assert module.path == folder.resolve()
    assert module.entry == "pkg"
    assert module.name == "pkg"


def test_module_folder_without_init_is_refused(tmp_path: Path) -> None:
    """A folder without __init__.py cannot expose main(), so it is refused."""
    write(tmp_path / "nopkg" / "code.py", "def main(): pass\n")
    with pytest.raises(ValueError, match="__init__"):
        Module(tmp_path / "nopkg")


def test_module_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    """A path that does not exist is a FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        Module(tmp_path / "nowhere.py")


def test_module_non_py_file_is_refused(tmp_path: Path) -> None:
    """An existing file that is not .py is not a module."""
    with pytest.raises(FileNotFoundError):
        Module(write(tmp_path / "notes.txt", "hi"))


def test_module_name_must_be_identifier(tmp_path: Path) -> None:
    """The import entry must be a valid identifier (a hyphenated file cannot be imported)."""
    with pytest.raises(ValueError, match="identifier"):
        Module(write(tmp_path / "my-worker.py"))


def test_bundle_is_deterministic_and_ignores_mtime(tmp_path: Path) -> None:
    """Same files give the same zip bytes and sha, even after the mtimes change."""
    module = Module(make_package(tmp_path))
    first = module.bundle()
    assert module.bundle() == first
    sha = module.sha()
    assert sha == sha256(first)
    for file in (tmp_path / "pkg").rglob("*"):
        os.utime(file, (1_000_000, 1_000_000))
    assert module.sha() == sha


def test_bundle_independent_of_location(tmp_path: Path) -> None:
    """The same package in two different folders bundles to the same sha (names are relative)."""
    one = Module(make_package(tmp_path / "one"))
    two = Module(make_package(tmp_path / "two" / "deeper"))
    assert one.sha() == two.sha()


def test_bundle_changes_with_content(tmp_path: Path) -> None:
    """Editing a file changes the sha (the cache key of the code on nodes)."""
    module = Module(make_package(tmp_path))
    before = module.sha()
    write(tmp_path / "pkg" / "helper.py", "VALUE = 22\n")
    assert module.sha() != before


def test_bundle_skips_pycache_and_compiled_files(tmp_path: Path) -> None:
    """__pycache__ folders and .pyc/.pyo files never enter the bundle."""
    folder = make_package(tmp_path)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "helper.cpython-311.pyc").write_bytes(b"\0junk")
    (folder / "stale.pyc").write_bytes(b"\0junk")
    (folder / "old.pyo").write_bytes(b"\0junk")
    (folder / "emptydir").mkdir()
    names = zipfile.ZipFile(io.BytesIO(Module(folder).bundle())).namelist()
    assert names == ["pkg/__init__.py", "pkg/helper.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"]


def test_bundle_single_file_layout(tmp_path: Path) -> None:
    """A single-file module is bundled as just that file at the zip root."""
    module = make_module(tmp_path, "worker")
    write(tmp_path / "unrelated.py", "X = 1\n")
    assert zipfile.ZipFile(io.BytesIO(module.bundle())).namelist() == ["worker.py"]


def test_bundle_single_file_is_zipimportable(tmp_path: Path) -> None:
    """A node can put the bundle on sys.path, import the entry and call main()."""
    module = make_module(tmp_path, "worker", "def main():\n    return 'hello from zip'\n")
    assert run_from_zip(tmp_path, module.bundle(), module.entry) == "hello from zip"


def test_bundle_package_is_zipimportable(tmp_path: Path) -> None:
    """A package bundle imports from the zip with its relative imports working."""
    module = Module(make_package(tmp_path / "src"))
    assert run_from_zip(tmp_path, module.bundle(), module.entry) == "42"


def test_relative_paths_resolve_against_relative_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside relative_to(dir) a relative module path is resolved in dir, not the cwd."""
    base = tmp_path / "swarmdir"
    write(base / "worker.py")
    monkeypatch.chdir(tmp_path)
    with relative_to(base):
        module = Module("worker.py")
    assert module.path == (base / "worker.py").resolve()
    with pytest.raises(FileNotFoundError):  # outside the context the cwd is used again
        Module("worker.py")


def test_relative_to_nests_and_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested relative_to contexts use the innermost folder and restore the outer one on exit."""
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    write(outer / "w.py")
    write(inner / "w.py")
    monkeypatch.chdir(tmp_path)
    with relative_to(outer):
        with relative_to(inner):
            assert Module("w.py").path == (inner / "w.py").resolve()
        assert Module("w.py").path == (outer / "w.py").resolve()


def test_relative_path_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without relative_to, relative paths resolve against the current directory."""
    write(tmp_path / "w.py")
    monkeypatch.chdir(tmp_path)
    assert Module("w.py").path == (tmp_path / "w.py").resolve()


# --- Task ------------------------------------------------------------------------------------


def test_task_defaults(mod_a: Module) -> None:
    """A task defaults to method all, on nodes, unlimited, alias = module name, no edges."""
    task = Task(mod_a)
    assert task.alias == "a"
    assert task.name == "a"
    assert task.method == "all"
    assert task.placement == "nodes"
    assert task.maximum == -1
    assert task.fixed is False
    assert task.previous == []


def test_task_alias_follows_module_name(tmp_path: Path) -> None:
    """The default alias is the module's name (not the file stem) when a name was given."""
    module = Module(write(tmp_path / "w.py"), name="trainer")
    assert Task(module).alias == "trainer"
    assert Task(module, alias="other").alias == "other"
    assert Task(module, alias="").alias == "trainer"  # an empty alias means "use the default"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "some"},
        {"placement": "cloud"},
        {"maximum": 0.0},
        {"maximum": 1.5},
        {"maximum": -0.5},
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": 7 * 24 * 3600 + 1},  # nodes refuse assignments with longer timeouts
        {"alias": "bad alias"},
        {"alias": "a/b"},
        {"alias": "+"},
        {"alias": "x" * 65},
    ],
)
def test_task_validation(mod_a: Module, kwargs: dict[str, object]) -> None:
    """Bad method, placement, fractional maximum, timeout or alias are refused at construction."""
    with pytest.raises(ValueError):
        Task(mod_a, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("maximum", [1.0, 0.01, 5, -1, None])
def test_task_valid_maximums(mod_a: Module, maximum: float | int | None) -> None:
    """Fractions in (0, 1], counts, -1 and None are accepted."""
    assert Task(mod_a, maximum=maximum).maximum == maximum


@pytest.mark.parametrize(
    ("kwargs", "eligible", "cap"),
    [
        ({"method": "any"}, 5, 1),
        ({"method": "any"}, 0, 0),
        ({"method": "any", "maximum": 4}, 5, 1),
        ({}, 7, 7),
        ({"maximum": -1}, 7, 7),
        ({"maximum": None}, 7, 7),
        ({"maximum": 0}, 7, 7),
        ({"maximum": 3}, 7, 3),
        ({"maximum": 10}, 7, 7),
        ({"maximum": 0.5}, 5, 3),  # ceil(2.5)
        ({"maximum": 0.5}, 4, 2),
        ({"maximum": 0.1}, 5, 1),  # ceil(0.5), never 0 with eligible nodes
        ({"maximum": 0.01}, 3, 1),
        ({"maximum": 1.0}, 6, 6),
        ({"maximum": 0.5}, 0, 0),
        ({"specified_ids": ["n1", "n2"]}, 5, 2),
        ({"specified_ids": ["n1", "n2"], "maximum": 1}, 5, 1),
        ({"specified_ids": ["n1", "n2", "n3"]}, 1, 1),
    ],
)
def test_node_cap(mod_a: Module, kwargs: dict[str, object], eligible: int, cap: int) -> None:
    """node_cap applies method any, int maximum, ceil of a fraction, -1 unlimited and specified_ids."""
    assert Task(mod_a, **kwargs).node_cap(eligible) == cap  # type: ignore[arg-type]


@given(
    eligible=st.integers(min_value=0, max_value=200),
    maximum=st.one_of(
        st.none(),
        st.integers(min_value=-1, max_value=300),
        st.floats(min_value=0.001, max_value=1.0, allow_nan=False),
    ),
    method=st.sampled_from(["all", "any"]),
)
def test_node_cap_bounds(tmp_path_factory: pytest.TempPathFactory, eligible: int, maximum, method: str) -> None:
    """node_cap is always within [0, eligible] and at least 1 whenever some node is eligible."""
    module = _shared_module(tmp_path_factory)
    cap = Task(module, method=method, maximum=maximum).node_cap(eligible)
    assert 0 <= cap <= eligible
    assert (cap >= 1) == (eligible >= 1)


_SHARED: dict[str, Module] = {}


def _shared_module(factory: pytest.TempPathFactory) -> Module:
    if "m" not in _SHARED:
        _SHARED["m"] = Module(write(factory.mktemp("shared") / "m.py"))
    return _SHARED["m"]


# --- SwarmGraph ------------------------------------------------------------------------------


def tasks(tmp_path: Path, *names: str) -> list[Task]:
    return [Task(make_module(tmp_path, n)) for n in names]


def test_chain_order_roots_successors(tmp_path: Path) -> None:
    """c(b(a())) gives order [a, b, c], root a and one successor per link."""
    a, b, c = tasks(tmp_path, "a", "b", "c")
    graph = SwarmGraph(c(b(a())))
    assert graph.order == ["a", "b", "c"]
    assert graph.roots() == ["a"]
    assert graph.successors("a") == ["b"]
    assert graph.successors("b") == ["c"]
    assert graph.successors("c") == []
    assert set(graph.tasks) == {"a", "b", "c"}
    assert graph.tasks["b"] is b


def test_order_follows_edges_not_names(tmp_path: Path) -> None:
    """Graph order respects edges even when alphabetical order says otherwise."""
    worker, aggregator, scheduler = tasks(tmp_path, "worker", "aggregator", "scheduler")
    graph = SwarmGraph(scheduler(aggregator(worker())))
    assert graph.order == ["worker", "aggregator", "scheduler"]
    assert graph.roots() == ["worker"]


def test_task_call_without_argument_and_dedup(tmp_path: Path) -> None:
    """Calling a task with nothing returns it; adding the same predecessor twice adds one edge."""
    a, b = tasks(tmp_path, "a", "b")
    assert a() is a
    assert b(a) is b
    b(a)
    b([a, a])
    assert b.previous == [a]


def test_steps_from_mid_graph_includes_downstream_only(tmp_path: Path) -> None:
    """Starting at b of a->b->c runs b and c, never a."""
    a, b, c = tasks(tmp_path, "a", "b", "c")
    graph = SwarmGraph(c(b(a())))
    assert graph.steps_from(["b"]) == ["b", "c"]
    assert graph.steps_from(["a"]) == ["a", "b", "c"]
    assert graph.steps_from(["c"]) == ["c"]
    assert graph.steps_from(["c", "a"]) == ["a", "b", "c"]  # graph order, not argument order


def test_steps_from_unknown_alias(tmp_path: Path) -> None:
    """An alias that is not in the graph is a KeyError naming it."""
    (a,) = tasks(tmp_path, "a")
    with pytest.raises(KeyError, match="nope"):
        SwarmGraph(a).steps_from(["nope"])


def test_fan_in_from_list(tmp_path: Path) -> None:
    """agg([w1, w2]) makes both workers roots feeding the aggregator."""
    w1, w2, agg, sched = tasks(tmp_path, "w1", "w2", "agg", "sched")
    graph = SwarmGraph(sched(agg([w1, w2])))
    assert graph.roots() == ["w1", "w2"]
    assert graph.order.index("agg") > max(graph.order.index("w1"), graph.order.index("w2"))
    assert graph.order[-1] == "sched"
    assert graph.successors("w1") == ["agg"]
    assert graph.successors("w2") == ["agg"]
    assert graph.steps_from(["w2"]) == ["w2", "agg", "sched"]


def test_multiple_tails(tmp_path: Path) -> None:
    """A list of last tasks collects the union of their graphs; a shared task appears once."""
    a, b, c = tasks(tmp_path, "a", "b", "c")
    b(a)
    c(a)
    graph = SwarmGraph([b, c])
    assert graph.order == ["a", "b", "c"]
    assert graph.successors("a") == ["b", "c"]


def test_diamond(tmp_path: Path) -> None:
    """a -> (b, c) -> d orders a first and d last; steps_from(b) includes d but not c."""
    a, b, c, d = tasks(tmp_path, "a", "b", "c", "d")
    graph = SwarmGraph(d([b(a), c(a)]))
    assert graph.order[0] == "a"
    assert graph.order[-1] == "d"
    assert graph.steps_from(["b"]) == ["b", "d"]


def test_empty_tails_refused() -> None:
    """execute() returning an empty list is an error, not an empty swarm."""
    with pytest.raises(ValueError):
        SwarmGraph([])


def test_duplicate_aliases_refused(tmp_path: Path) -> None:
    """Two distinct tasks with the same alias (same module, no alias) are refused."""
    module = make_module(tmp_path, "worker")
    first, second = Task(module), Task(module)
    agg = Task(make_module(tmp_path, "agg"))
    with pytest.raises(ValueError, match="alias"):
        SwarmGraph(agg([first, second]))
    SwarmGraph(Task(make_module(tmp_path, "agg2"))([Task(module, alias="w1"), Task(module, alias="w2")]))


def test_cycle_detected(tmp_path: Path) -> None:
    """A cycle built by appending to .previous is reported as a ValueError."""
    a, b, c = tasks(tmp_path, "a", "b", "c")
    c(b(a()))
    a.previous.append(c)
    with pytest.raises(ValueError, match="cycle"):
        SwarmGraph(c)


def test_self_loop_detected(tmp_path: Path) -> None:
    """A task that depends on itself is a cycle too."""
    (a,) = tasks(tmp_path, "a")
    a.previous.append(a)
    with pytest.raises(ValueError, match="cycle"):
        SwarmGraph(a)


# --- load_swarm ------------------------------------------------------------------------------


@pytest.fixture
def forget_modules():
    """Drop modules imported by swarm files (and their siblings) so tests stay independent."""
    before = set(sys.modules)
    path_before = list(sys.path)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("manta_swarm_", "sib_")):
            del sys.modules[name]
    assert sys.path == path_before  # load_swarm must not leave its folder on sys.path


SWARM_FILE = """
from manta_mqtt.swarm import Module, Swarm, Task
from sib_helpers import ALIAS

WORKER = Module("worker.py", datasets=["mnist"])  # module level, relative to this file


class MySwarm(Swarm):
    name = "demo"

    def __init__(self):
        super().__init__()
        self.worker = Task(WORKER, alias=ALIAS)
        self.agg = Task(Module("agg_pkg"), placement="coordinator")
        self.set_global("lr", 0.1)

    def execute(self):
        sched = Task(Module("sched.py"), placement="coordinator")  # built during graph()
        return sched(self.agg(self.worker()))
"""


def test_load_swarm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: None) -> None:
    """A swarm file loads with sibling imports and file-relative module paths, from any cwd."""
    root = tmp_path / "proj"
    write(root / "swarm.py", SWARM_FILE)
    write(root / "sib_helpers.py", "ALIAS = 'trainer'\n")
    write(root / "worker.py", "def main(): pass\n")
    write(root / "sched.py", "def main(): pass\n")
    write(root / "agg_pkg" / "__init__.py", "def main(): pass\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    swarm = load_swarm(root / "swarm.py")
    assert type(swarm).__name__ == "MySwarm"
    assert swarm.name == "demo"
    assert swarm.base_dir == root.resolve()
    assert swarm.globals == {"lr": 0.1}
    graph = swarm.graph()
    assert graph.order == ["trainer", "agg_pkg", "sched"]
    assert graph.tasks["trainer"].module.path == (root / "worker.py").resolve()
    assert graph.tasks["trainer"].module.datasets == ["mnist"]
    assert graph.tasks["agg_pkg"].module.path == (root / "agg_pkg").resolve()
    assert graph.tasks["sched"].module.path == (root / "sched.py").resolve()


def test_load_swarm_accepts_str_and_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: None
) -> None:
    """load_swarm takes a relative string path (resolved against the cwd)."""
    write(tmp_path / "s1.py", "from manta_mqtt.swarm import Swarm\nclass S(Swarm):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    assert type(load_swarm("s1.py")).__name__ == "S"


def test_load_swarm_ignores_imported_subclasses(tmp_path: Path, forget_modules: None) -> None:
    """Swarm subclasses imported from elsewhere do not count: only the file's own class does."""
    write(tmp_path / "sib_base.py", "from manta_mqtt.swarm import Swarm\nclass Base(Swarm):\n    pass\n")
    write(tmp_path / "s2.py", "from sib_base import Base\nclass Mine(Base):\n    pass\n")
    swarm = load_swarm(tmp_path / "s2.py")
    assert type(swarm).__name__ == "Mine"


def test_load_swarm_zero_subclasses_refused(tmp_path: Path, forget_modules: None) -> None:
    """A file with no Swarm subclass is refused."""
    write(tmp_path / "s3.py", "X = 1\n")
    with pytest.raises(ValueError, match="none"):
        load_swarm(tmp_path / "s3.py")


def test_load_swarm_two_subclasses_need_class_name(tmp_path: Path, forget_modules: None) -> None:
    """Two subclasses are ambiguous unless class_name picks one; an unknown name is refused."""
    write(
        tmp_path / "s4.py",
        """
        from manta_mqtt.swarm import Swarm
        class First(Swarm):
            name = "first"
        class Second(Swarm):
            name = "second"
        """,
    )
    with pytest.raises(ValueError, match="First, Second"):
        load_swarm(tmp_path / "s4.py")
    assert load_swarm(tmp_path / "s4.py", class_name="Second").name == "second"
    assert load_swarm(tmp_path / "s4.py", "First").name == "first"
    with pytest.raises(ValueError):
        load_swarm(tmp_path / "s4.py", class_name="Third")


def test_load_swarm_missing_file(tmp_path: Path) -> None:
    """A path with no file is a FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        load_swarm(tmp_path / "missing.py")


def test_swarm_base_class_behaviour() -> None:
    """Swarm.execute must be overridden; set_global refuses empty or non-string tags."""
    swarm = Swarm()
    with pytest.raises(NotImplementedError):
        swarm.execute()
    swarm.set_global("w", [1, 2])
    assert swarm.globals == {"w": [1, 2]}
    with pytest.raises(ValueError):
        swarm.set_global("", 1)
    with pytest.raises(ValueError):
        swarm.set_global(3, 1)  # type: ignore[arg-type]


def test_bundle_pycache_check_uses_relative_parts(tmp_path: Path) -> None:
    """Only __pycache__ folders inside the module are skipped, not ones above it on disk."""
    module = make_module(tmp_path / "__pycache__" / "proj", "worker")
    assert zipfile.ZipFile(io.BytesIO(module.bundle())).namelist() == ["worker.py"]


def test_load_swarm_sibling_import_inside_init(tmp_path: Path, forget_modules: None) -> None:
    """A sibling module imported inside the Swarm's __init__ resolves like a top-level import does."""
    write(tmp_path / "sib_lazy.py", "ALIAS = 'lazy'\n")
    write(
        tmp_path / "s5.py",
        """
        from manta_mqtt.swarm import Swarm
        class Lazy(Swarm):
            def __init__(self):
                super().__init__()
                from sib_lazy import ALIAS
                self.alias = ALIAS
        """,
    )
    assert load_swarm(tmp_path / "s5.py").alias == "lazy"  # type: ignore[attr-defined]
