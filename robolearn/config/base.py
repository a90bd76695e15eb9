"""The building blocks of the config: its error type, the strict base of every section, ranges."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the source and the dotted key."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys, lax type coercion and non-finite floats are
    errors; assignments are validated."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True,
                              frozen=False)


class Range(StrictModel):
    """A closed interval ``[lo, hi]``; written in YAML as a two-element list."""

    lo: float
    hi: float

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"expected [lo, hi], got {list(value)}")
            return {"lo": value[0], "hi": value[1]}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if self.lo > self.hi:
            raise ValueError(f"lo > hi in [{self.lo}, {self.hi}]")
        return self

    @model_serializer
    def _to_list(self) -> list:
        return [self.lo, self.hi]

    def as_tuple(self) -> tuple[float, float]:
        return (self.lo, self.hi)


class IntRange(Range):
    """A closed integer interval ``[lo, hi]``."""

    lo: int
    hi: int
