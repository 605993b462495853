"""The artifact check: what a bundle must look like for a host to load it (text-level unit tests, no node)."""

from __future__ import annotations

import pytest

from autopilot_sync.tsbuild import ArtifactError, check_artifact

BUNDLE = """\
var __using = (stack, value, async) => { return value; };
import * as _syscalls2_0 from "spacetime:sys@2.0";
import { moduleHooks } from "spacetime:sys@2.0";
  // a comment using a word that is not a declaration
import * as _syscalls2_1 from 'spacetime:sys@2.1';
export { x as default };
"""


def test_a_bundle_that_keeps_its_syscall_imports_passes() -> None:
    assert check_artifact(BUNDLE) == ("spacetime:sys@2.0", "spacetime:sys@2.1")


def test_a_bundle_without_the_syscall_import_is_refused() -> None:
    with pytest.raises(ArtifactError, match=r"does not import spacetime:sys@2\.0"):
        check_artifact("export const x = 1;\n")


@pytest.mark.parametrize("declaration", ["  using it = tableIterator(id);", "await using conn = open();"])
def test_a_bundle_with_a_using_declaration_is_refused(declaration: str) -> None:
    with pytest.raises(ArtifactError, match="`using` declaration at line 7"):
        check_artifact(BUNDLE + declaration + "\n")
