"""The C files build from the project's own files wherever a C compiler and Python's headers are, so a build that
silently fails (and leaves the Python twins running, slower) is seen on CI rather than in a benchmark."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import hatch_build  # noqa: E402  (the build hook lives at the repository's root)

HAVE_TOOLS = (Path(sysconfig.get_paths()["include"]) / "Python.h").exists() and shutil.which("cc") is not None


@pytest.mark.skipif(not HAVE_TOOLS, reason="no C compiler or Python headers here: the Python twins run")
@pytest.mark.parametrize("source", hatch_build.SOURCES, ids=lambda path: path.name)
def test_each_c_file_builds_and_imports_where_a_compiler_is(source: Path, tmp_path: Path) -> None:
    copy = tmp_path / source.name
    shutil.copy(ROOT / source, copy)
    built = hatch_build.compile_one(copy)
    assert built is not None and built.exists()
    spec = importlib.util.spec_from_file_location(f"autopilot_sync.spacetime.{copy.stem}", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "Program", None) or getattr(module, "check", None))


@pytest.mark.skipif(not HAVE_TOOLS, reason="no C compiler or Python headers here: the Python twins run")
def test_the_freshly_built_bsatn_writes_the_commit_log_record_python_writes(tmp_path: Path) -> None:
    from autopilot_sync.host.caller import Caller
    from autopilot_sync.host.transaction import CommittedTx, TableChange
    from autopilot_sync.host.tx_record import encode_record_python
    from autopilot_sync.spacetime.values import Identity, Timestamp

    copy = tmp_path / "_bsatn.c"
    shutil.copy(ROOT / "src/autopilot_sync/spacetime/_bsatn.c", copy)
    built = hatch_build.compile_one(copy)
    assert built is not None
    spec = importlib.util.spec_from_file_location("autopilot_sync.spacetime._bsatn", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = ((b"event", ()), (b"", ()))
    tx = CommittedTx(7, Timestamp(-3), "append", Caller(Identity(2**255)), (TableChange("t", rows, rows[:1]),))
    assert module.encode_tx_record(tx, encode_record_python) == encode_record_python(tx)
