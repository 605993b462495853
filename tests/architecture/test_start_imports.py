"""A service start pays only for its own code: the CLI imports the subcommand being run, nothing else.

Each check runs in a fresh interpreter (an import in this test process would hide the child's own), resolves one
subcommand through the `autopilot-sync` group as click does when it runs it, and lists what ended up imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from autopilot_sync.cli import SUBCOMMANDS, main
from autopilot_sync.settings.environment import service_environment
from autopilot_sync.settings.fields import ListenAddress
from autopilot_sync.settings.host import HostSettings

#: What a service's start must not import: the other services and the tools (verification, ops, dbcli, devtools).
OTHER_SERVICES = ("host", "control", "runtime", "desktop", "exporter", "verification", "ops", "dbcli", "devtools")


def imported_after_resolving(command: str) -> set[str]:
    """`sys.modules` of a fresh interpreter after `autopilot-sync <command>` was resolved (not run)."""
    script = (
        "import json, sys, click\n"
        "from autopilot_sync.cli import main\n"
        f"main.get_command(click.Context(main), {command!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("service", ["host", "control", "runtime", "desktop"])
def test_starting_a_service_imports_no_other_service(service: str) -> None:
    loaded = imported_after_resolving(service)
    others = {f"autopilot_sync.{name}" for name in OTHER_SERVICES if name != service}
    if service == "host":
        others.add("autopilot_sync.client")  # the SDK is for the services that talk to a host
    assert sorted(others & loaded) == []


def test_every_listed_subcommand_is_the_click_command_of_that_name() -> None:
    ctx = click.Context(main)
    assert set(SUBCOMMANDS) <= set(main.list_commands(ctx))
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name


#: Libraries the host's start does not need: token signing/checking (joserfc, and `cryptography.x509` under it) and
#: the SQL parser (sqlglot) are imported when the first token or query arrives.
NOT_AT_HOST_START = ("joserfc", "cryptography.x509", "sqlglot")


def test_importing_the_host_server_loads_no_token_or_sql_library() -> None:
    script = "import json, sys\nimport autopilot_sync.host.server\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert sorted(set(NOT_AT_HOST_START) & set(json.loads(done.stdout))) == []


def test_the_host_imports_its_sql_and_token_libraries_in_the_background_once_ready() -> None:
    script = (
        "import json, sys\n"
        "from autopilot_sync.host.warm import warm_in_background\n"
        "warm_in_background(0.0).join(120)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=180)
    assert sorted(set(NOT_AT_HOST_START) - set(json.loads(done.stdout))) == []


#: What a real host start on the sync module loads before its `ready` line must not include: the token libraries,
#: libsecp256k1 (Nostr keys are built with the first proof), the TypeScript module layer (a Python module is
#: served) and, on a restart of the same data directory or a first start whose cache directory holds the filters'
#: verdict, the SQL parser. The v1 protocol's codec loads with the first v1 connection. pydantic is no dependency any
#: more (the settings are read by `settings/base.py`); its import with one validator per field was ~0.2 s of the start.
#: aiohttp's client (and its TLS contexts) loads with the first OIDC key fetch (`auth/aiohttp_client.py`).
NOT_BEFORE_READY = (
    "click",  # `autopilot-sync host` is read by `launch.py`; click loads only for help, usage errors, other commands
    "pydantic",
    "aiohttp.client",
    "aiohttp.connector",
    "aiohttp.tracing",
    "autopilot_sync.spacetime.moduledef.diff",  # the schema diff: with the first publish or a changed schema
    "joserfc",
    "cryptography",  # the host key is created and checked by `host/auth/keyfile.py`; parsed with the first token
    "cryptography.x509",
    "coincurve",
    "autopilot_sync.host.js_module",
    "autopilot_sync.jsmodule",
    "autopilot_sync.host.session_v1",  # the v1 codec: with the first v1 client (or the warm-up after ready)
    "autopilot_sync.spacetime.messages_v1",
    "prometheus_client.exposition",  # the `/metrics` encoder: with the first scrape or the warm-up after ready
)


def host_import_lines(data_dir: Path, cache_dir: Path, log: Path, after_ready: str | None = None) -> list[str]:
    """Start `autopilot-sync host` under `-X importtime` on `data_dir`: its output up to its `ready` line (and, with
    `after_ready`, on until an import of that module finishes). One pipe carries both streams, unbuffered, so the
    order of the lines is the order the host wrote them: an import line before `ready` is an import before it (the
    warm-up after `ready` starts at once, `host/warm.py`)."""
    fields = {
        "listen": ListenAddress("127.0.0.1", 0),
        "data_dir": data_dir,
        "cache_dir": cache_dir,
        "module": "autopilot_sync.module",
    }
    env = {**os.environ, **service_environment(HostSettings, fields), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-X", "importtime", "-m", "autopilot_sync", "host", "--log-level", "WARNING"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        ready = False
        for line in process.stdout:
            lines.append(line)
            ready = ready or " ready: " in line
            if ready and (after_ready is None or imported([line]) == [after_ready]):
                break
    finally:
        process.kill()  # not terminate: what a graceful stop imports would land in the output
        process.wait(timeout=30)
    log.write_text("".join(lines))
    assert ready, "".join(lines)[-2000:]
    return lines


def imported(lines: list[str]) -> list[str]:
    """The modules of `-X importtime` lines, in the order their imports finished."""
    return [line.split("|")[-1].strip() for line in lines if line.startswith("import time:")]


def modules_loaded_before_ready(data_dir: Path, cache_dir: Path, log: Path) -> set[str]:
    """Start `autopilot-sync host` under `-X importtime` on `data_dir`; the modules it imported before `ready`."""
    lines = host_import_lines(data_dir, cache_dir, log)
    return set(imported(lines[:-1]))


def test_a_host_start_loads_no_token_key_or_typescript_library_before_ready(tmp_path: Path) -> None:
    first = modules_loaded_before_ready(tmp_path / "data", tmp_path / "cache", tmp_path / "first.log")
    assert "autopilot_sync.host.server" in first
    assert "sqlglot" in first  # nothing recorded anywhere yet: the filters are compiled
    assert sorted(set(NOT_BEFORE_READY) & first) == []
    # A new data directory whose cache directory holds the verdict, then a restart with an empty cache directory.
    other = modules_loaded_before_ready(tmp_path / "other", tmp_path / "cache", tmp_path / "other.log")
    restart = modules_loaded_before_ready(tmp_path / "data", tmp_path / "no-cache", tmp_path / "restart.log")
    # With the verdict cached nothing before ready reads installed distributions' metadata (sqlglot's import would).
    assert sorted({*NOT_BEFORE_READY, "sqlglot", "importlib.metadata"} & other) == []
    assert sorted({*NOT_BEFORE_READY, "sqlglot", "importlib.metadata"} & restart) == []


def test_the_warm_up_after_ready_imports_the_sql_parser_first_and_the_v1_codec_last(tmp_path: Path) -> None:
    # A restart on a data directory whose verdict is cached: nothing of the SQL parser or the token libraries before
    # `ready`, then, unasked, the parser (what a first resume waits for), the token libraries, the v1 codec.
    modules_loaded_before_ready(tmp_path / "data", tmp_path / "cache", tmp_path / "first.log")
    # (`importlib.import_module` writes no importtime line of its own: the markers are modules those imports import.)
    v1_codec = "autopilot_sync.spacetime.messages_v1"
    lines = host_import_lines(tmp_path / "data", tmp_path / "cache", tmp_path / "restart.log", after_ready=v1_codec)
    ready = next(i for i, line in enumerate(lines) if " ready: " in line)
    after = imported(lines[ready:])
    assert not {"joserfc._keys", "sqlglot", v1_codec} & set(imported(lines[:ready]))
    assert after.index("sqlglot") < after.index("joserfc._keys") < after.index(v1_codec)
