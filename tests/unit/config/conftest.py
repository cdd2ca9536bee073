"""Fixtures for config tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., str]:
    """``write(text, name="envoy.yaml") -> path`` in a fresh temporary directory."""

    def _write(text: str, name: str = "envoy.yaml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return _write
