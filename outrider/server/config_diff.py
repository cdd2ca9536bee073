"""What a reload changes: listeners, routes and clusters added, removed and changed. Pure.

Listeners and clusters are identified by name, as Envoy's listener and cluster managers do;
"changed" means the resource's config differs in any field. Routes are the route configs
inside the listeners' HTTP connection managers, named by ``route_config.name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.bootstrap.v3 import bootstrap_pb2


@dataclass(frozen=True)
class Changes:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, noun: str) -> str:
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed))
                 if names]
        return f"{noun}: {'; '.join(parts)}" if parts else ""


@dataclass(frozen=True)
class ConfigDiff:
    listeners: Changes = field(default_factory=Changes)
    routes: Changes = field(default_factory=Changes)
    clusters: Changes = field(default_factory=Changes)

    def __bool__(self) -> bool:
        return bool(self.listeners or self.routes or self.clusters)

    def summary(self) -> str:
        parts = [changes.describe(noun) for noun, changes in
                 (("listeners", self.listeners), ("routes", self.routes),
                  ("clusters", self.clusters)) if changes]
        return " | ".join(parts) if parts else "no change"


def compare(old: dict[str, bytes], new: dict[str, bytes]) -> Changes:
    """Compare two name → serialized-config maps."""
    return Changes(
        added=tuple(sorted(n for n in new if n not in old)),
        removed=tuple(sorted(n for n in old if n not in new)),
        changed=tuple(sorted(n for n in new if n in old and new[n] != old[n])),
    )


def _serialized(messages) -> dict[str, bytes]:
    return {m.name: m.SerializeToString(deterministic=True) for m in messages}


def _route_configs(bootstrap: bootstrap_pb2.Bootstrap) -> dict[str, bytes]:
    from outrider.server.listener import listener_hcm

    routes = {}
    for listener in bootstrap.static_resources.listeners:
        try:
            hcm = listener_hcm(listener)
        except ValueError:
            continue
        if hcm.HasField("route_config"):
            name = hcm.route_config.name or f"{listener.name}/route_config"
            routes[name] = hcm.route_config.SerializeToString(deterministic=True)
    return routes


def diff(old: bootstrap_pb2.Bootstrap, new: bootstrap_pb2.Bootstrap) -> ConfigDiff:
    old_res, new_res = old.static_resources, new.static_resources
    return ConfigDiff(
        listeners=compare(_serialized(old_res.listeners), _serialized(new_res.listeners)),
        routes=compare(_route_configs(old), _route_configs(new)),
        clusters=compare(_serialized(old_res.clusters), _serialized(new_res.clusters)),
    )
