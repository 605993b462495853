"""Fixtures of the sync module tests (helpers live in sync_module_helpers.py: conftest modules are not importable)."""

from sync_module_helpers import engine, served_module, sync_module, unconfigured_engine

__all__ = ["engine", "served_module", "sync_module", "unconfigured_engine"]
