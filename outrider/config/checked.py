"""Load and check a config the way ``--mode validate`` does: the one gate a config passes
through, at start and at every reload."""

from __future__ import annotations

from dataclasses import dataclass

from outrider.config.errors import ConfigError, ConfigIssue
from outrider.config.loader import LoadedConfig, load_bootstrap
from outrider.config.validate import unservable_listeners, validate


@dataclass(frozen=True)
class ConfigOptions:
    """The command-line options that change how a config file is read."""

    allow_unimplemented: bool = False
    env_substitution: bool = False


def load_checked(path: str, options: ConfigOptions) -> tuple[LoadedConfig | None, list[ConfigIssue]]:
    """The config at ``path`` and every issue found in it; the config is None when any issue
    is an error. A config that passes has the listeners Outrider cannot serve removed (the
    issues include a warning naming each)."""
    try:
        loaded = load_bootstrap(path, env_substitution=options.env_substitution)
    except ConfigError as error:
        return None, list(error.issues)
    issues = validate(loaded, allow_unimplemented=options.allow_unimplemented)
    if any(issue.severity == "error" for issue in issues):
        return None, issues
    listeners = loaded.bootstrap.static_resources.listeners
    for index, _reason in reversed(unservable_listeners(loaded.bootstrap)):
        del listeners[index]
    return loaded, issues
