"""Repository tools (`gate check`, `compliance signoff`, `config docs`, `bench`) need a checkout; say so in one line.

The installed CLI carries them because CI and developers run them from a checkout's `.venv`; from an installed wheel
they have nothing to read (the blocked-symbol registry, the docs, `bench/` live beside `src/`, not in the wheel). So
each finds its checkout here and, when there is none, ends with one line and exit 2 instead of judging an empty tree.
"""

from __future__ import annotations

from pathlib import Path

import click

from autopilot_sync.gate.files import find_root


class NotACheckout(click.ClickException):
    """A repository tool was run outside a checkout of autopilot-sync (exit 2, like a usage error)."""

    exit_code = 2


def checkout_root(root: Path | None, marker: str | Path, tool: str) -> Path:
    """`root` as given (the tool then judges it, however broken), else the git work tree around the current directory
    if it holds `marker`, else `NotACheckout`."""
    if root is not None:
        return root.resolve()
    base = find_root(Path.cwd()).resolve()
    if not (base / marker).exists():
        raise NotACheckout(
            f"{tool} is a repository tool: run it inside a checkout of autopilot-sync, or pass --root "
            f"(no {marker} under {base})"
        )
    return base


def source_checkout() -> Path | None:
    """The checkout this package runs from (an editable install or `src/` on the path), None from a wheel."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() and (candidate / "src").is_dir() else None
