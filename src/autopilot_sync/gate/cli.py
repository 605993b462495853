"""`autopilot-sync gate` (placeholder until the gate lands in this package)."""

from __future__ import annotations

import click


@click.group()
def gate() -> None:
    """Zero-legacy gates."""


@gate.command("check")
def check() -> None:
    """Scan the tree for blocked legacy symbols."""
