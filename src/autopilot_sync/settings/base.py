"""The base every service's settings class derives from: environment only, frozen, defaults validated too.

A settings class declares each field as `name: T = setting(KIND, description="...", default=...)`, where the kind
(`settings/fields.py`) parses the raw text an operator writes (or a typed value a caller passes) and names the form
shown in errors and docs. The variable `<prefix><FIELD>` sets a field, matched without regard to case; a keyword
given to the constructor wins over the environment; values reach the kind as the raw strings (every list-shaped
kind splits its own commas).

Why not pydantic: this reader is all the services used of it, and pydantic's import with one validator built per
field (plus its plugin scan of every installed distribution's metadata) was ~0.2 s of the host's ~1.1 s of CPU to
`ready` (docs/performance.md "Round 5 — startup2"). The variables, defaults, forms and error texts are unchanged
(`tests/settings/`, `autopilot-sync config docs --check`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

T = TypeVar("T")

ENV_PREFIX_ROOT = "AUTOPILOT_SYNC_"
"""Every variable of this project starts with this, then the service name, then the field name."""


@dataclass(frozen=True, slots=True)
class Kind(Generic[T]):
    """How a field's value is read: `parse` turns the raw text (or an already typed value) into `T`, raising
    ValueError with the reason; `form` is how an operator writes it (errors and the docs table show it)."""

    form: str
    parse: Callable[[object], T]


class _Missing:
    """The default of a required field."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Missing()
"""`setting(..., default=REQUIRED)`: no default, the variable must be set."""

#: A cross-field check: (the parsed value, the fields validated before it) -> the value, or ValueError.
Check = Callable[[T, Mapping[str, object]], T]


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One field of a settings class: how it is read, what it means, and its default (REQUIRED: none)."""

    kind: Kind[T]
    description: str
    default: object = REQUIRED
    check: Check[T] | None = None

    def is_required(self) -> bool:
        """True when the field has no default."""
        return self.default is REQUIRED

    def validate(self, raw: object, before: Mapping[str, object]) -> T:
        """The field's value from `raw` (ValueError with the reason when it is not acceptable)."""
        value = self.kind.parse(raw)
        return self.check(value, before) if self.check is not None else value


def setting(kind: Kind[T], *, description: str, default: object = REQUIRED, check: Check[T] | None = None) -> T:
    """Declare a settings field (typed as its value, as `dataclasses.field` is); the class collects it at creation."""
    return cast(T, Setting(kind, description, default, check))


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a settings construction: a field missing, a value refused, or an unknown keyword."""

    field: str
    reason: Literal["missing", "invalid", "unknown"]
    input: object = None
    message: str = ""


class SettingsError(ValueError):
    """The settings could not be built; `problems` names each field at fault (one entry per field)."""

    def __init__(self, cls_name: str, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        lines = [f"{len(problems)} problem(s) with {cls_name}"]
        lines += [f"{p.field}: {p.reason} {p.input!r}: {p.message}".rstrip(": ") for p in problems]
        super().__init__("\n".join(lines))


class ServiceSettings:
    """One service's whole configuration, read from the environment once at start (see `load_settings`).

    Subclasses are declared `class XSettings(ServiceSettings, service="x")` and give every field a description:
    the docs table and the start-up errors are generated from it. `Settings()` reads the process environment;
    keywords override it (tests). Instances are frozen and compare by value.
    """

    fields: ClassVar[dict[str, Setting[Any]]] = {}
    """Every field of the class by name, in declaration order."""

    _env_prefix: ClassVar[str] = ""

    def __init_subclass__(cls, *, service: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if service:
            cls._env_prefix = f"{ENV_PREFIX_ROOT}{service.upper()}_"
        declared = {name: value for name, value in vars(cls).items() if isinstance(value, Setting)}
        for name in declared:
            delattr(cls, name)  # the instance holds the value; the declaration lives in `fields`
        cls.fields = {**cls.fields, **declared}

    def __init__(self, **values: object) -> None:
        raw: dict[str, object] = {**self.from_environment(os.environ), **values}
        problems = [Problem(name, "unknown", raw[name], "Extra inputs are not permitted") for name in raw]
        problems = [problem for problem in problems if problem.field not in self.fields]
        validated: dict[str, object] = {}
        for name, field in self.fields.items():
            if name in raw:
                given = raw[name]
            elif field.is_required():
                problems.append(Problem(name, "missing", None, "Field required"))
                continue
            else:
                given = field.default
            try:
                validated[name] = field.validate(given, validated)
            except ValueError as exc:
                problems.append(Problem(name, "invalid", given, str(exc)))
        if problems:
            raise SettingsError(type(self).__name__, tuple(problems))
        for name, value in validated.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be deleted")

    def _values(self) -> Iterator[tuple[str, object]]:
        return ((name, getattr(self, name)) for name in self.fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and tuple(self._values()) == tuple(other._values())

    def __hash__(self) -> int:
        return hash((type(self), tuple(self._values())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in self._values())})"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> dict[str, str]:
        """The raw value of each field set in `environ` (variable names compared without regard to case)."""
        by_name = {name.upper(): value for name, value in environ.items()}
        return {
            field: by_name[variable] for field in cls.fields if (variable := cls.env_name(field).upper()) in by_name
        }

    @classmethod
    def env_prefix(cls) -> str:
        """The prefix of this service's variables, e.g. `AUTOPILOT_SYNC_HOST_`."""
        return cls._env_prefix

    @classmethod
    def service_name(cls) -> str:
        """The service's short name, e.g. `host` (from the prefix, so the two cannot disagree)."""
        return cls.env_prefix().removeprefix(ENV_PREFIX_ROOT).rstrip("_").lower()

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets `field`."""
        return f"{cls.env_prefix()}{field.upper()}"
