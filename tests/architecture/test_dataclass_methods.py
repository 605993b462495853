"""The host start's dataclass methods come from a cache of their compiled code (`dataclass_methods.py`), and the
classes are exactly what `dataclasses` alone makes.

Each check runs in fresh interpreters: the cache only matters for classes created after `install`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot_sync import dataclass_methods

#: Defines a few dataclasses (frozen, slotted, ordered, with defaults and factories) with the cache installed at
#: argv[1] (or without it when argv[2] is "plain"), then prints what they do and how many texts were compiled.
SCRIPT = """
import dataclasses, json, sys
from pathlib import Path
from autopilot_sync import dataclass_methods
path = Path(sys.argv[1])
installed = sys.argv[2] != "plain" and dataclass_methods.install(path)

@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int = 2
    tags: tuple[str, ...] = ()

@dataclasses.dataclass(order=True)
class Item:
    name: str
    extra: list[int] = dataclasses.field(default_factory=list)

p = Point(1)
try:
    p.x = 5
    frozen = "no error"
except dataclasses.FrozenInstanceError as exc:
    frozen = str(exc)
compiled = dataclass_methods.finish(path) if installed else -1
print(json.dumps({
    "installed": bool(installed),
    "compiled": compiled,
    "repr": [repr(p), repr(Item("a"))],
    "eq": [p == Point(1, 2), p == Point(1, 3), hash(p) == hash(Point(1)), Item("a") < Item("b")],
    "frozen": frozen,
    "slots": Point.__slots__,
    "factory_fresh": Item("a").extra is not Item("a").extra,
    "fields": [f.name for f in dataclasses.fields(Point)],
}))
"""


def _run(path: Path, mode: str = "cached") -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), mode], capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_shadow_exec_is_only_in_dataclasses_namespace_between_install_and_finish(tmp_path: Path) -> None:
    assert "exec" not in vars(dataclasses)
    assert dataclass_methods.install(tmp_path / "cache.bin")
    try:
        assert "exec" in vars(dataclasses)
        assert not dataclass_methods.install(tmp_path / "cache.bin")  # once
    finally:
        dataclass_methods.finish(tmp_path / "cache.bin")
    assert "exec" not in vars(dataclasses)


def test_a_second_start_compiles_no_method_and_its_classes_behave_as_without_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "dataclass-methods.bin"
    first = _run(path)
    assert first["installed"] is True and isinstance(first["compiled"], int) and first["compiled"] > 0
    assert path.is_file()
    second = _run(path)
    assert second["compiled"] == 0
    plain = _run(tmp_path / "unused.bin", "plain")
    for run in (first, second):
        assert {key: value for key, value in run.items() if key not in ("installed", "compiled")} == {
            key: value for key, value in plain.items() if key not in ("installed", "compiled")
        }
    assert plain["frozen"] == "cannot assign to field 'x'"


@pytest.mark.parametrize("content", [b"", b"garbage", b"APSDCM2\0" + b"\x00" * 40])
def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "dataclass-methods.bin"
    path.write_bytes(content)
    first = _run(path)
    assert isinstance(first["compiled"], int) and first["compiled"] > 0
    assert _run(path)["compiled"] == 0


@pytest.mark.parametrize("where", [-1, -200, 20])
def test_a_cache_file_with_a_flipped_byte_is_not_loaded_and_is_rewritten(tmp_path: Path, where: int) -> None:
    path = tmp_path / "dataclass-methods.bin"
    assert isinstance(_run(path)["compiled"], int)
    data = bytearray(path.read_bytes())
    data[where] ^= 0x40  # inside the marshalled code, or the digest: a disk that lies
    path.write_bytes(bytes(data))
    again = _run(path)
    assert isinstance(again["compiled"], int) and again["compiled"] > 0
    assert _run(path)["compiled"] == 0


def test_a_host_start_writes_the_cache_its_next_start_uses() -> None:
    # The real start path (`launch.py` installs, the warm-up after ready finishes): the file is beside the package.
    path = dataclass_methods.cache_path()
    if sys.version_info[:2] == (3, 11):
        assert path.parent.name == "__pycache__" and path.name.startswith("dataclass-methods.")
