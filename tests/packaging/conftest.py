"""The project as a user installs it: the wheel built from this checkout, installed into a fresh virtual environment.

Bounded: one wheel build and one `--no-deps` install per test session (seconds, no network for our package). The
dependencies come from the checkout's `.venv` through a `.pth` line (that directory's own `.pth` files, including
the editable install of `src/`, are not processed), so every `autopilot_sync` import resolves to the installed wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class InstalledWheel:
    """A fresh venv with the wheel installed; `run` calls its `autopilot-sync` from a directory outside any checkout."""

    venv: Path
    outside: Path

    @property
    def command(self) -> Path:
        """The installed console script."""
        return self.venv / "bin" / "autopilot-sync"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`autopilot-sync ARGS` in the directory outside the checkout."""
        return subprocess.run(
            [str(self.command), *args],
            cwd=self.outside,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def _uv() -> str:
    found = shutil.which("uv") or str(CHECKOUT / ".tools" / "bin" / "uv")
    if not Path(found).is_file():
        pytest.skip("uv is needed to build and install the wheel (./dev installs it under .tools/)")
    return found


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledWheel]:
    """Build the wheel, make a venv (without pip) beside it, install the wheel there with `--no-deps`."""
    root = tmp_path_factory.mktemp("wheel")
    uv = _uv()
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(root / "dist"), str(CHECKOUT)], check=True, timeout=300)
    (wheel,) = (root / "dist").glob("autopilot_sync-*.whl")
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)  # type: ignore[attr-defined]
    purelib = Path(sysconfig.get_path("purelib"))  # the checkout .venv's site-packages: the dependencies
    target = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (target / "_dependencies.pth").write_text(f"{purelib}\n", encoding="utf-8")
    python = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--no-deps", "--python", str(python), str(wheel)], check=True, timeout=300)
    outside = root / "elsewhere"
    outside.mkdir()
    yield InstalledWheel(venv, outside)
