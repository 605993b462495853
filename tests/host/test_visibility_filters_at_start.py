"""A module whose row-level-security filter does not compile is refused when the host loads it, not per read.

SpacetimeDB checks `client_visibility_filter` SQL when a module is published; a host that started anyway would fail
every later subscription of that table with a confusing error instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autopilot_sync.bindings.module import Module
from autopilot_sync.host.engine import EngineConfig, HostEngine
from autopilot_sync.host.sql import VisibilityFilterError
from autopilot_sync.host.sql.verdict import CACHE_KEPT, CACHE_SUBDIR, VERDICT_FILE, remember_in_cache
from autopilot_sync.spacetime import algebraic as at

BAD_FILTER = "SELECT * FROM secret WHERE no_such_column = :sender"

MODULE_SOURCE = textwrap.dedent(
    f"""
    from autopilot_sync.bindings.module import Module
    from autopilot_sync.spacetime import algebraic as at

    module = Module("bad_filter", version="1")
    module.table("secret", [("id", at.U64), ("owner", at.IDENTITY)], primary_key="id")
    module.client_visibility_filter("secret", {BAD_FILTER!r})
    """
)


def _module_with(sql: str) -> Module:
    module = Module("bad_filter", version="1")
    module.table("secret", [("id", at.U64), ("owner", at.IDENTITY)], primary_key="id")
    module.client_visibility_filter("secret", sql)
    return module


def test_engine_refuses_a_module_whose_visibility_filter_does_not_compile(tmp_path: Path) -> None:
    with pytest.raises(VisibilityFilterError) as refused:
        HostEngine(_module_with(BAD_FILTER), tmp_path, "bad")
    assert refused.value.table == "secret"
    assert "no_such_column" in str(refused.value)


def test_engine_accepts_a_module_whose_visibility_filters_compile(tmp_path: Path) -> None:
    engine = HostEngine(_module_with("SELECT * FROM secret WHERE owner = :sender"), tmp_path, "good")
    assert engine.module.visibility_filters() == {"secret": ("SELECT * FROM secret WHERE owner = :sender",)}


def test_host_process_refuses_to_start_naming_the_table_and_the_sql_error(tmp_path: Path) -> None:
    (tmp_path / "bad_filter_module.py").write_text(MODULE_SOURCE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    args = ["--module", "bad_filter_module", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"]
    done = subprocess.run(
        [sys.executable, "-m", "autopilot_sync", "host", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "ready" not in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert "`secret`" in errors[0] and "no_such_column" in errors[0] and BAD_FILTER in errors[0]
    assert "Traceback" not in done.stderr


GOOD_FILTER = "SELECT * FROM secret WHERE owner = :sender"

#: Constructs an engine with the good filter on the data directory in argv[1]; prints whether sqlglot was imported.
ENGINE_SCRIPT = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    from autopilot_sync.bindings.module import Module
    from autopilot_sync.host.engine import EngineConfig, HostEngine
    from autopilot_sync.spacetime import algebraic as at

    module = Module("bad_filter", version="1")
    module.table("secret", [("id", at.U64), ("owner", at.IDENTITY)], primary_key="id")
    module.client_visibility_filter("secret", {GOOD_FILTER!r})
    cache_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    HostEngine(module, Path(sys.argv[1]), "good", EngineConfig(cache_dir=cache_dir))
    print("sqlglot" in sys.modules)
    """
)


def _engine_imported_sqlglot(data_dir: Path, cache_dir: Path | None = None) -> bool:
    cache = [str(cache_dir)] if cache_dir is not None else []
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_SCRIPT, str(data_dir), *cache],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip() == "True"


def test_a_restart_with_the_same_filters_and_tables_skips_compiling_them(tmp_path: Path) -> None:
    assert _engine_imported_sqlglot(tmp_path)  # first start: compiled, and the success recorded
    assert not _engine_imported_sqlglot(tmp_path)  # same filters and tables: the record stands, no sqlglot


def test_a_filter_changed_since_the_recorded_check_is_compiled_again_and_refused(tmp_path: Path) -> None:
    HostEngine(_module_with(GOOD_FILTER), tmp_path, "good")
    assert (tmp_path / VERDICT_FILE).is_file()
    with pytest.raises(VisibilityFilterError):
        HostEngine(_module_with(BAD_FILTER), tmp_path, "bad")


def test_a_damaged_record_only_costs_a_recompile(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / VERDICT_FILE).write_bytes(b"\xff not a digest")
    assert _engine_imported_sqlglot(tmp_path)
    assert not _engine_imported_sqlglot(tmp_path)


def test_a_first_start_on_a_new_data_directory_skips_the_compile_its_cache_directory_recorded(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _engine_imported_sqlglot(tmp_path / "first", cache)  # compiled, recorded in the data and cache directories
    assert (cache / CACHE_SUBDIR).is_dir()
    assert not _engine_imported_sqlglot(tmp_path / "second", cache)  # a new data directory: the cache's verdict
    assert (tmp_path / "second" / VERDICT_FILE).is_file()  # ... copied, so its restarts need no cache
    assert _engine_imported_sqlglot(tmp_path / "third", tmp_path / "other-cache")  # no verdict there: compiled


def test_a_cached_verdict_never_stands_for_a_filter_that_does_not_compile(tmp_path: Path) -> None:
    config = EngineConfig(cache_dir=tmp_path / "cache")
    HostEngine(_module_with(GOOD_FILTER), tmp_path / "good", "good", config)
    with pytest.raises(VisibilityFilterError):
        HostEngine(_module_with(BAD_FILTER), tmp_path / "bad", "bad", config)
    assert len(list((tmp_path / "cache" / CACHE_SUBDIR).iterdir())) == 1  # only the good filters' verdict


def test_the_cache_directory_keeps_only_the_newest_verdicts(tmp_path: Path) -> None:
    for number in range(CACHE_KEPT + 5):
        remember_in_cache(tmp_path, f"{number:064x}")
    kept = {path.name for path in (tmp_path / CACHE_SUBDIR).iterdir()}
    assert len(kept) == CACHE_KEPT
    assert f"{CACHE_KEPT + 4:064x}" in kept
