"""Counted nouns for messages and summaries: "1 file", "2 files", "1 backward pass"."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """`count` followed by `noun`, or by its plural (`noun + "s"` unless given) when count != 1."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


def times(count: int) -> str:
    """'once', 'twice', or 'N times'."""
    return {1: "once", 2: "twice"}.get(count, f"{count} times")
