"""Temporary attribute patches and hook handles, all undone in reverse order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MISSING = object()


class Undo:
    """Collects ways to undo what a session installed; `run()` undoes all, newest first."""

    def __init__(self) -> None:
        self._actions: list[Callable[[], None]] = []

    def patch(self, owner: Any, name: str, value: Any) -> Any:
        """Set owner.name = value; returns the attribute as it was (resolved through the MRO)."""
        original_own = owner.__dict__.get(name, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        original = getattr(owner, name)
        setattr(owner, name, value)

        def restore() -> None:
            if original_own is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original_own)

        self._actions.append(restore)
        return original

    def handle(self, handle: Any) -> None:
        """Remember a torch hook handle to remove."""
        self._actions.append(handle.remove)

    def call(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def run(self) -> list[BaseException]:
        """Undo everything; returns the errors met (never raises, so every action gets its turn)."""
        errors: list[BaseException] = []
        while self._actions:
            action = self._actions.pop()
            try:
                action()
            except Exception as error:  # noqa: BLE001 - keep undoing the rest
                errors.append(error)
        return errors
