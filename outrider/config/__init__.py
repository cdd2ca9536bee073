"""Envoy v3 bootstrap loading and validation.

``load_bootstrap(path) -> LoadedConfig`` (raises ``ConfigError``) is re-exported here, lazily so
that ``outrider.config.durations`` stays cheap for modules that only need it. Import the checker
as ``from outrider.config.validate import validate`` (a package attribute named ``validate``
would be shadowed by the submodule of the same name).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConfigError": "outrider.config.errors",
    "ConfigIssue": "outrider.config.errors",
    "LoadedConfig": "outrider.config.loader",
    "load_bootstrap": "outrider.config.loader",
    "load_bootstrap_text": "outrider.config.loader",
}

__all__ = ["ConfigError", "ConfigIssue", "LoadedConfig", "load_bootstrap", "load_bootstrap_text"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'outrider.config' has no attribute {name!r}")
    return getattr(import_module(module), name)
