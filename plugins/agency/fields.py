"""Field-by-field validation of JSON objects, shared by the simulators (requests) and the client
(replies).

A :class:`Fields` wraps one JSON object and a dotted path (``subject.id_no``); every accessor checks
presence and type and raises :class:`FieldError` naming the exact field and what was wrong. The
server turns that into a 400 reply; the client turns it into :class:`~plugins.agency.errors.AgencyReplyInvalid`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import date
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = object()


class FieldError(ValueError):
    """One field of a JSON object is missing, of the wrong type or out of range."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field '{field}': {problem}")
        self.field = field
        self.problem = problem


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Fields:
    """Typed, path-aware access to one JSON object."""

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise FieldError(path or "(body)", f"expected an object, got {_type_name(data)}")
        self._data: Mapping[str, Any] = data
        self._path = path
        self._seen: set[str] = set()

    @property
    def raw(self) -> Mapping[str, Any]:
        return self._data

    def path(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def has(self, name: str) -> bool:
        return self._data.get(name) is not None

    def _get(self, name: str, required: bool) -> Any:
        self._seen.add(name)
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise FieldError(self.path(name), "is required")
            return None
        return value

    def fail(self, name: str, problem: str) -> FieldError:
        return FieldError(self.path(name), problem)

    # -- scalars -----------------------------------------------------------------------------

    def opt_text(
        self,
        name: str,
        *,
        pattern: str | None = None,
        choices: Collection[str] | None = None,
        max_len: int = 500,
        strip: bool = True,
    ) -> str | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {_type_name(value)}")
        if strip:
            value = value.strip()
        if not value:
            raise self.fail(name, "must not be empty")
        if len(value) > max_len:
            raise self.fail(name, f"is longer than {max_len} characters")
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(sorted(choices))}; got {value!r}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise self.fail(name, f"has an invalid format: {value!r}")
        return value

    def text(
        self,
        name: str,
        *,
        pattern: str | None = None,
        choices: Collection[str] | None = None,
        max_len: int = 500,
        strip: bool = True,
    ) -> str:
        self._get(name, True)
        value = self.opt_text(name, pattern=pattern, choices=choices, max_len=max_len, strip=strip)
        assert value is not None
        return value

    def opt_integer(self, name: str, *, min: int | None = None, max: int | None = None) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"expected an integer, got {_type_name(value)}")
        if min is not None and value < min:
            raise self.fail(name, f"must be at least {min}; got {value}")
        if max is not None and value > max:
            raise self.fail(name, f"must be at most {max}; got {value}")
        return value

    def integer(self, name: str, *, min: int | None = None, max: int | None = None) -> int:
        self._get(name, True)
        value = self.opt_integer(name, min=min, max=max)
        assert value is not None
        return value

    def opt_number(self, name: str) -> float | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"expected a number, got {_type_name(value)}")
        return float(value)

    def number(self, name: str) -> float:
        self._get(name, True)
        value = self.opt_number(name)
        assert value is not None
        return value

    def flag(self, name: str, default: bool | None = None) -> bool:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, bool):
            raise self.fail(name, f"expected true or false, got {_type_name(value)}")
        return value

    def opt_day(self, name: str) -> date | None:
        text = self.opt_text(name, pattern=r"\d{4}-\d{2}-\d{2}")
        if text is None:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise self.fail(name, f"is not a valid date (YYYY-MM-DD): {text!r}") from None

    def day(self, name: str) -> date:
        self._get(name, True)
        value = self.opt_day(name)
        assert value is not None
        return value

    # -- containers --------------------------------------------------------------------------

    def opt_obj(self, name: str) -> Fields | None:
        value = self._get(name, False)
        if value is None:
            return None
        return Fields(value, self.path(name))

    def obj(self, name: str) -> Fields:
        value = self._get(name, True)
        return Fields(value, self.path(name))

    def array(self, name: str, *, max_items: int = 10_000) -> list[Any]:
        value = self._get(name, True)
        if not isinstance(value, list):
            raise self.fail(name, f"expected an array, got {_type_name(value)}")
        if len(value) > max_items:
            raise self.fail(name, f"has more than {max_items} items")
        return value

    def objs(self, name: str, parse: Callable[[Fields], T]) -> list[T]:
        items = self.array(name)
        return [parse(Fields(item, f"{self.path(name)}[{i}]")) for i, item in enumerate(items)]

    def texts(self, name: str, *, count: int | None = None, max_len: int = 100) -> list[str]:
        items = self.array(name)
        if count is not None and len(items) != count:
            raise self.fail(name, f"must have exactly {count} items; got {len(items)}")
        out: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise FieldError(f"{self.path(name)}[{i}]", "expected a non-empty string")
            if len(item) > max_len:
                raise FieldError(f"{self.path(name)}[{i}]", f"is longer than {max_len} characters")
            out.append(item.strip())
        return out

    def reject_unknown(self) -> None:
        """Raise on the first field the handler never asked for (catches typos in requests)."""
        for key in self._data:
            if key not in self._seen:
                raise FieldError(self.path(key), "is not a known field")
