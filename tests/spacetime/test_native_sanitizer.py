"""A bounded run of the C code's tests under AddressSanitizer + UBSan, in the normal suite where gcc has libasan.

`scripts/sanitize-native.sh` is the full tool (docs/verification.md); this runs its build and, at the normal case
count, the selection that is fast under the sanitizer: every regression test of a finding, every error path's leak
check, the hostile encode values, the row-list checker and `pack_run` fuzz (~20 s on 2 busy cores, most of it the
sanitized compile and pytest's start). A memory error or undefined behaviour in either C file fails it with the
sanitizer's report. The heavy decode fuzz stays in the full tool.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "sanitize-native.sh"
SELECTION = "findings or leaks or hostile or row_list or packing or recursion"


def _libasan_here() -> bool:
    gcc = shutil.which("gcc")
    if gcc is None:
        return False
    found = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False)
    return os.path.isabs(found.stdout.strip()) and os.path.exists(found.stdout.strip())


@pytest.mark.sanitizer
@pytest.mark.skipif(not _libasan_here(), reason="no gcc with libasan here: scripts/sanitize-native.sh cannot build")
@pytest.mark.skipif("NATIVE_SANITIZED_DIR" in os.environ, reason="already running under the sanitizer")
def test_the_c_codes_regressions_leak_checks_and_hostile_values_pass_under_asan_and_ubsan() -> None:
    # its own process group: on a timeout the script's pytest goes with it
    run = subprocess.Popen(
        [str(SCRIPT), "1", "-k", SELECTION],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        raise
    report = f"{stdout[-4000:]}\n{stderr[-8000:]}"
    assert run.returncode == 0, report
    assert "SANITIZER REPORT" not in stderr, report
    assert " passed" in stdout and " failed" not in stdout, report
