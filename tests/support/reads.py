"""Cutting a byte stream into the reads (or sends) a peer would see."""

from __future__ import annotations


def split(data: bytes, cuts: tuple[int, ...] | list[int]) -> list[bytes]:
    """``data`` cut at each offset (taken modulo len+1); empty pieces dropped."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return [p for p in pieces if p]
