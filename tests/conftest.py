"""Suite-wide setup.

hypothesis is imported here, at collection start, so pytest's assertion rewriter compiles it before any test runs:
CPython 3.11.7 can fail to compile a module after a RecursionError was raised earlier in the same thread
("AST constructor recursion depth mismatch"), which some hostile-input tests provoke on purpose.

Property tests have no deadline: tests never time things (benchmarks do), and on a busy 2-core CI machine a slow
example is not a failure (`DeadlineExceeded` failed a BSATN property test under load).
"""

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

from typescript_twin import build_twin, node_available

hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")


class FsyncGate:
    """Holds a child process's disk flushes (the test fault in tests/faults/fsync_gate/): `env()` for the child.

    `hold()` makes every later `fsync` of the child wait; `wait_blocked()` returns once one is waiting; `release()`
    lets it (and every later one) through. Deterministic where timing is not: an answer that must wait for the disk
    cannot arrive while the gate is held.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "fsync.gate"

    def env(self) -> dict[str, str]:
        """Environment that loads the fault into a child process."""
        paths = [str(FAULTS / "fsync_gate"), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {"PYTHONPATH": os.pathsep.join(paths), "FAULT_FSYNC_GATE": str(self.path)}

    def hold(self) -> None:
        """Make the child's next flushes wait."""
        self.path.touch()

    async def wait_blocked(self) -> None:
        """Return once a flush waits at the gate (fails after 20 s)."""
        marker = f"{self.path}.blocked"
        async with asyncio.timeout(20):
            while not os.path.exists(marker):  # noqa: ASYNC110, ASYNC240 (another process makes it: poll)
                await asyncio.sleep(0.005)

    def release(self) -> None:
        """Let every held flush through."""
        self.path.unlink(missing_ok=True)


FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture(scope="session")
def fsync_gate_at() -> type[FsyncGate]:
    """`FsyncGate` itself, for module-scoped fixtures (test modules cannot import a conftest reliably)."""
    return FsyncGate


@pytest.fixture
def fsync_gate(tmp_path: Path) -> Iterator[FsyncGate]:
    """A fsync gate for one test, always released at the end (so a child process can stop)."""
    gate = FsyncGate(tmp_path)
    try:
        yield gate
    finally:
        gate.release()


@pytest.fixture(scope="session")
def typescript_sync_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sync module's TypeScript twin built from `modules/autopilot-sync` (tests/typescript_twin.py: npm ci when
    needed, tsc, esbuild; cached by source hash under pytest's temporary root, shared by sessions)."""
    if not node_available():
        pytest.skip("node and npm are needed to build the TypeScript twin (./dev test installs them)")
    return build_twin(tmp_path_factory.getbasetemp().parent / "typescript-modules")
