"""Which files the gate reads: git's view of the tree (tracked plus new, minus ignored), else a filtered walk."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SKIPPED_DIRS = frozenset(
    {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"},
)
"""Directories the fallback walk never enters: tool state and third-party code, not the project's text."""

_BINARY_PROBE = 8192


def find_root(start: Path) -> Path:
    """The git work tree containing `start`, or `start` itself outside git."""
    result = git_output(start, "rev-parse", "--show-toplevel")
    return Path(result.strip()) if result is not None else start


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files to scan under `root`, sorted.

    In a git work tree: tracked files and new files not yet added (so a violation cannot hide by being
    uncommitted), minus what `.gitignore` excludes. Elsewhere: every file except under `SKIPPED_DIRS`.
    """
    listed = git_output(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        return sorted({name for name in listed.split("\0") if name})
    found: list[str] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [name for name in subdirs if name not in SKIPPED_DIRS]
        base = Path(directory).relative_to(root)
        found.extend((base / name).as_posix() for name in names)
    return sorted(found)


def read_text(root: Path, relative: str) -> str | None:
    """The file's text, or None for what is not a readable regular text file (gone, a directory, binary)."""
    path = root / relative
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:_BINARY_PROBE]:
        return None
    return data.decode("utf-8", errors="replace")


def git_output(cwd: Path, *args: str) -> str | None:
    """Run a read-only git command; None when git is missing or `cwd` is not in a work tree."""
    try:
        completed = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)
    except OSError:
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.decode("utf-8", errors="surrogateescape")
