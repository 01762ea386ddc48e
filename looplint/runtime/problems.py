"""A problem a check found at one call site, before it becomes a Finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from looplint.runtime.sites import Site


@dataclass
class Problem:
    code: str
    site: Site | None
    message: str
    related: list[Site] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
