"""`autopilot-sync build` turns a TypeScript module project into the one ES-module file a host loads.

Real processes throughout: the CLI runs the project's own `tsc` and `esbuild` (pinned in modules/chat's lockfile).
The promises: the artifact keeps its `spacetime:sys@…` imports and has no `using` declaration; a type error fails
the build with the compiler's messages and no traceback, and leaves no module behind; a project that is not ready
is told in one line what to do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tsbuild_helpers import CHAT, run_build

from autopilot_sync.tsbuild import check_artifact

pytestmark = pytest.mark.node

BROKEN = """\
import { schema, table, t } from 'spacetimedb/server';

const counter = table({ name: 'counter', public: true }, { id: t.u32().primaryKey(), value: t.u64() });
const spacetimedb = schema({ counter });
export default spacetimedb;

export const bump = spacetimedb.reducer({ id: t.u32() }, (ctx, { id }) => {
  const label: string = id;
  ctx.db.counter.insert({ id, value: 0n });
});
"""


def test_the_chat_module_builds_into_one_es_module_that_keeps_its_syscall_imports(
    chat_project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "chat.js"

    done = run_build("--project-path", str(chat_project), "--out", str(out))

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("type-checking ") and "tsc 7.0.2" in lines[0]
    assert lines[1] == "bundling src/index.ts with esbuild 0.28.2"
    size_kib = out.stat().st_size / 1024
    assert lines[2].startswith(f"built {out} ({size_kib:.1f} KiB)")
    source = out.read_text()
    assert check_artifact(source) == ("spacetime:sys@2.0", "spacetime:sys@2.1")
    exports = re.search(r"^export \{([^}]*)\};", source, re.MULTILINE)
    assert exports is not None, "one ES module with one export list"
    assert {name.strip() for name in exports.group(1).split(",")} >= {"index_default as default", "set_name"}
    assert [p.name for p in out.parent.iterdir()] == ["chat.js"], "no partial file is left beside the module"


def test_without_out_the_module_goes_where_spacetime_build_puts_it(project_copy: Path) -> None:
    done = run_build(cwd=project_copy)

    assert done.returncode == 0, done.stderr
    check_artifact((project_copy / "dist" / "bundle.js").read_text())


def test_a_type_error_fails_the_build_with_the_compilers_messages_and_writes_nothing(
    project_copy: Path, tmp_path: Path
) -> None:
    (project_copy / "src" / "index.ts").write_text(BROKEN)
    out = tmp_path / "broken.js"

    done = run_build("--project-path", str(project_copy), "--out", str(out))

    assert done.returncode == 1
    assert "src/index.ts(8,9): error TS2322" in done.stderr, done.stderr
    assert done.stderr.rstrip().splitlines()[-1] == "Error: type check failed (1 error): fix them and build again"
    assert "Traceback" not in done.stderr
    assert not out.exists() and "bundling" not in done.stdout


def test_a_project_without_installed_packages_is_told_to_run_npm_ci(project_copy: Path) -> None:
    (project_copy / "node_modules").unlink()

    done = run_build("--project-path", str(project_copy))

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: typescript is not installed in {project_copy}/node_modules: run `npm ci` in {project_copy}"
    )


def test_an_install_older_than_the_pins_is_told_to_run_npm_ci(project_copy: Path) -> None:
    manifest = json.loads((project_copy / "package.json").read_text())
    manifest["devDependencies"]["esbuild"] = "0.28.3"
    (project_copy / "package.json").write_text(json.dumps(manifest))

    done = run_build("--project-path", str(project_copy))

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: {project_copy}/node_modules has esbuild 0.28.2 but package.json pins 0.28.3: "
        f"run `npm ci` in {project_copy}"
    )


def test_a_directory_that_is_not_a_module_project_is_refused_in_one_line(tmp_path: Path) -> None:
    done = run_build("--project-path", str(tmp_path))

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: {tmp_path} has no package.json: pass a module project directory with --project-path"
    )


@pytest.mark.parametrize("project", sorted(CHAT.parent.glob("*/package-lock.json")), ids=lambda p: p.parent.name)
def test_every_module_project_in_the_repository_builds(project: Path, tmp_path: Path) -> None:
    root = project.parent
    if not (root / "node_modules" / ".bin" / "tsc").exists():
        pytest.skip(f"{root}/node_modules missing (./dev test installs it)")
    out = tmp_path / f"{root.name}.js"

    done = run_build("--project-path", str(root), "--out", str(out))

    assert done.returncode == 0, done.stderr
    assert "spacetime:sys@2.0" in check_artifact(out.read_text())


def test_an_out_path_that_cannot_be_written_is_refused_in_one_line(project_copy: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    done = run_build("--project-path", str(project_copy), "--out", str(blocker / "chat.js"))

    assert done.returncode == 1
    assert done.stderr.strip() == f"Error: cannot create {blocker} (File exists): choose another --out"
