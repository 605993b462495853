"""The other direction of `load.py`: the environment that sets chosen fields of a service's settings class.

Whatever starts services as child processes (the local stack, `autopilot-sync up`, the chaos suite, the benchmarks)
names settings *fields*, and this module spells the variables: `AUTOPILOT_SYNC_<SERVICE>_<FIELD>`, in the form the
field's validator reads back. A field that is renamed or removed then fails where the stack is wired, with the
class and the name, instead of as an "unknown variable" in a child's start-up error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from autopilot_sync.settings.base import ServiceSettings
from autopilot_sync.settings.fields import ListenAddress

__all__ = ["env_value", "service_environment"]


def env_value(value: object) -> str:
    """`value` as the environment writes it: lists comma-separated, booleans `true`/`false`, addresses `host:port`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list, frozenset, set)):
        return ",".join(env_value(item) for item in value)
    if isinstance(value, (ListenAddress, Path, int, float, str)):
        return str(value)
    raise TypeError(f"no environment form for {type(value).__name__}: {value!r}")


def service_environment(settings: type[ServiceSettings], values: Mapping[str, object]) -> dict[str, str]:
    """The variables that give `settings` the field `values` (None leaves a field at its default).

    ValueError names every key that is not a field of the class, so wiring code cannot set a variable nobody reads.
    """
    unknown = sorted(set(values) - set(settings.fields))
    if unknown:
        raise ValueError(f"{settings.__name__} has no field {', '.join(unknown)}")
    return {settings.env_name(name): env_value(value) for name, value in values.items() if value is not None}
