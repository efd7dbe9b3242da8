"""Choice fields of the config sections: StrEnums whose member names are the values users write."""

from __future__ import annotations

from enum import StrEnum


def choices(name: str, *values: str) -> type[StrEnum]:
    """A StrEnum whose member names are the values users write (OmegaConf matches by name)."""
    return StrEnum(name, [(value, value) for value in values])
