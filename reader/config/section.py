"""The base of every [section] of reader.toml, and the cross-field check they share."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo

from reader.system.i18n import _


class Section(BaseModel):
    """A [section] of reader.toml; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def not_below(value: float, info: ValidationInfo, section: str, lower: str) -> Any:
    """A cross-field check, reported on the later key (and naming the earlier one)."""
    floor = info.data.get(lower)  # absent when that key was itself refused
    if floor is not None and value < floor:
        raise ValueError(_("less than {key} = {floor}: it must be at least that").format(
            key=f"{section}.{lower}", floor=_plain(floor)))
    return value


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)
