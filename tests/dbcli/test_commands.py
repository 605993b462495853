"""The spacetime-shaped commands and the module logs route, end to end: the real CLI against real host and control.

One stack for the module: a host serving the chat example (which logs from `add_person`) under the stack's database
name, and control issuing tokens for Nostr keys. The owner is the stack's owner key (as under `./dev up`); a demo
user key is a non-owner. Each CLI run is a child process with its own HOME, so the server list is the test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from autopilot_sync.devtools.stack import DATABASE, LocalStack

pytestmark = pytest.mark.timeout(300)


@dataclass
class Cli:
    """Runs `autopilot-sync` as a child process with the test's HOME (its server list) against the stack."""

    stack: LocalStack
    home: Path
    owner_key: Path
    user_key: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_SYNC_")}
        return {**env, "HOME": str(self.home)}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "autopilot_sync", *args]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, env=self.env(), check=False
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr, self.stack.tails())
        return done.stdout

    def fails(self, *args: str) -> str:
        """The one-line error of a refused command (exit 1 or 2, no traceback)."""
        done = self.run(*args)
        assert done.returncode != 0, (args, done.stdout)
        lines = done.stderr.strip().splitlines()
        assert "Traceback" not in done.stderr, done.stderr
        return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("stack")
    stack = LocalStack(root, module="autopilot_sync.examples.chat")
    try:
        stack.start_host()  # not start_all: the chat module has no trusted-issuer setting to configure
        stack.start_control()
        home = tmp_path_factory.mktemp("home")
        runner = Cli(stack, home, root / "owner" / "nostr.key", root / "users" / "user-0.key")
        runner.ok(
            "server", "add", "test", "--url", stack.host_url, "--control-url", stack.control_url,
            "--key-file", str(runner.owner_key), "--default",
        )  # fmt: skip
        yield runner
    finally:
        stack.stop_all()


async def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as answer:
        return answer.status, dict(answer.headers), await answer.text()


def _records(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_server_list_shows_the_added_server_as_default_beside_the_built_in_local(cli: Cli) -> None:
    out = cli.ok("server", "list")
    lines = out.splitlines()
    assert any(line.startswith("***") and " test " in line and cli.stack.host_url in line for line in lines), out
    assert any(" local " in f" {line} " and "http://127.0.0.1:3000" in line for line in lines), out


def test_call_then_sql_shows_the_row_as_a_table_and_as_the_hosts_json(cli: Cli) -> None:
    assert cli.ok("call", DATABASE, "add_person", '"Ada"', "36") == ""
    table = cli.ok("sql", DATABASE, "SELECT name, age FROM person WHERE name = 'Ada'")
    assert table.splitlines()[0].split("|")[0].strip() == "name", table
    assert '"Ada"' in table and "36" in table
    answer = json.loads(cli.ok("sql", DATABASE, "SELECT name, age FROM person WHERE name = 'Ada'", "--json"))
    assert answer[0]["rows"] == [["Ada", 36]]


def test_a_reducer_refusal_and_bad_arguments_are_one_line_saying_why(cli: Cli) -> None:
    line = cli.fails("call", DATABASE, "fail", '"no thanks"')
    assert "reducer fail failed: HTTP 530: no thanks" in line, line
    line = cli.fails("call", DATABASE, "add_person", "Ada", "36")
    assert "argument 1" in line and "is not JSON" in line, line
    line = cli.fails("sql", DATABASE, "SELEKT nonsense")
    assert "HTTP 400" in line, line
    line = cli.fails("sql", DATABASE, "SELECT * FROM person", "--server", "http://127.0.0.1:9")
    assert line.startswith("Error: cannot reach 127.0.0.1:9") and "--server" in line, line


def test_subscribe_prints_each_transaction_update_as_a_json_line_and_stops_after_n(cli: Cli) -> None:
    process = subprocess.Popen(
        cli.command("subscribe", DATABASE, "SELECT * FROM person WHERE name = 'Grace'", "-n", "1", "-t", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env(),
    )
    try:
        time.sleep(3)  # let it subscribe (an update before the subscription would not be counted)
        cli.ok("call", DATABASE, "add_person", '"Grace"', "45")
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    (line,) = out.splitlines()
    update = json.loads(line)
    assert update["person"]["deletes"] == []
    (row,) = update["person"]["inserts"]
    assert (row["name"], row["age"]) == ("Grace", 45) and isinstance(row["id"], int)


def test_subscribe_that_times_out_before_n_updates_is_an_error(cli: Cli) -> None:
    line = cli.fails("subscribe", DATABASE, "SELECT * FROM person WHERE name = 'nobody'", "-n", "1", "-t", "2")
    assert "timed out after 2s with 0 of 1 updates" in line, line


def test_token_prints_a_session_token_other_commands_accept(cli: Cli) -> None:
    token = cli.ok("token").strip()
    assert token.count(".") == 2 and "\n" not in token
    cli.ok("call", DATABASE, "add_person", '"Alan"', "41", "--token", token)
    assert "Alan" in cli.ok("sql", DATABASE, "SELECT name FROM person WHERE name = 'Alan'", "--token", token)


def test_the_owner_reads_python_logging_from_reducers_and_reducer_failures_as_spacetimedb_records(cli: Cli) -> None:
    cli.ok("call", DATABASE, "add_person", '"Linus"', "54")
    cli.fails("call", DATABASE, "fail", '"refused on purpose"')
    cli.fails("call", DATABASE, "panic")
    records = _records(cli.ok("logs", DATABASE, "--format", "json"))
    added = [r for r in records if r.get("message") == "added Linus, aged 54"]
    assert added and added[-1]["level"] == "Info" and added[-1]["function"] == "add_person", records
    assert added[-1]["filename"] == "chat.py" and isinstance(added[-1]["line_number"], int)
    assert isinstance(added[-1]["ts"], int) and added[-1]["ts"] > 1_600_000_000_000_000
    refused = [r for r in records if r.get("message") == "refused on purpose"]
    assert refused and refused[-1]["level"] == "Error" and refused[-1]["function"] == "fail"
    assert refused[-1]["filename"] == "__spacetimedb__"
    panics = [r for r in records if r.get("level") == "Panic"]
    assert panics and panics[-1]["function"] == "panic" and panics[-1]["message"] == "deliberate panic"
    assert isinstance(panics[-1]["trace"], list) and panics[-1]["trace"]
    text = cli.ok("logs", DATABASE, "-n", "3")
    assert len(text.splitlines()) >= 3 and " PANIC: " in text and "deliberate panic" in text, text
    assert "INFO: chat.py:" in cli.ok("logs", DATABASE)


@pytest.mark.asyncio
async def test_the_logs_route_answers_ndjson_to_the_owner_and_refuses_everyone_else_typed(cli: Cli) -> None:
    url = f"{cli.stack.host_url}/v1/database/{DATABASE}/logs"
    async with aiohttp.ClientSession() as http:
        for reason in ("first refusal", "second refusal"):  # two lines in the log, whatever ran before
            async with http.post(f"{cli.stack.host_url}/v1/database/{DATABASE}/call/fail", json=[reason]) as answer:
                assert answer.status == 530
    owner = cli.ok("token").strip()
    status, headers, body = await _get(f"{url}?num_lines=2", owner)
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson"), (status, body)
    assert headers["Cache-Control"] == "no-cache" and len(_records(body)) == 2
    user = cli.ok("token", "--key-file", str(cli.user_key)).strip()
    status, _, body = await _get(url, user)
    assert status == 403 and body.endswith(
        "is not authorized to perform action on database autopilot-sync: view module logs"
    )
    status, _, body = await _get(url)  # anonymous: a minted identity, not the owner
    assert status == 403, body
    status, _, body = await _get(url, owner[:-4] + "AAAA")
    assert status == 401, body
    for query, expected in (
        ("num_lines=-1", "num_lines"),
        ("num_lines=99999999999", "num_lines"),
        ("follow=yes", "follow"),
    ):
        status, _, body = await _get(f"{url}?{query}", owner)
        assert status == 400 and expected in body, (query, status, body)
    line = cli.fails("logs", DATABASE, "--key-file", str(cli.user_key))
    assert "HTTP 403" in line and "--key-file" in line, line


def test_logs_follow_prints_new_lines_as_they_are_written_until_stopped(cli: Cli) -> None:
    process = subprocess.Popen(
        cli.command("logs", "-f", "-n", "0", DATABASE, "--format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env(),
    )
    try:
        time.sleep(3)
        cli.ok("call", DATABASE, "add_person", '"Margaret"', "33")
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["message"] == "added Margaret, aged 33", first
        assert process.poll() is None, "a follower keeps reading"
    finally:
        process.terminate()
        process.wait(10)
    # the host let the follower go: it still answers, and a new follower is accepted
    assert "Margaret" in cli.ok("logs", DATABASE, "-n", "5")


def test_module_logs_survive_a_host_restart(cli: Cli) -> None:
    cli.ok("call", DATABASE, "add_person", '"Barbara"', "40")
    assert cli.stack.host is not None
    cli.stack.host.stop(timeout=10)
    cli.stack.start_host()
    assert "added Barbara, aged 40" in cli.ok("logs", DATABASE, "-n", "50")


def test_subscribe_prints_the_initial_rows_first_when_asked(cli: Cli) -> None:
    cli.ok("call", DATABASE, "add_person", '"Edsger"', "72")
    out = cli.ok(
        "subscribe", DATABASE, "SELECT * FROM person WHERE name = 'Edsger'", "-n", "0", "--print-initial-update"
    )
    (line,) = out.splitlines()
    (row,) = json.loads(line)["person"]["inserts"]
    assert (row["name"], row["age"]) == ("Edsger", 72)
