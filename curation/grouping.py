"""Consecutive items cut into groups of about a given number of rows: records files into the tasks that
read them together."""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def consecutive_groups(items: Iterable[tuple[T, int]], rows_per_group: int) -> list[list[T]]:
    """(item, rows) pairs in order, cut into groups of at most `rows_per_group` rows; an item larger than
    that is a group of its own. No empty groups."""
    groups: list[list[T]] = []
    rows = 0
    for item, n in items:
        if not groups or rows + n > rows_per_group:
            groups.append([])
            rows = 0
        groups[-1].append(item)
        rows += n
    return groups
