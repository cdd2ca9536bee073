"""Cluster membership as data: host descriptions, health flags, and the events that change them.

Rules of this module (pure: no I/O, no asyncio, no clock):

* **Identity and weight** are a ``HostDescription``: immutable, compared by value. A host's
  identity is its ``key`` = ``(address, port, priority)``; a description with the same key and
  another weight (locality, hostname) is the same host, changed.
* **Health** is a set of ``HealthFlag``s (Envoy's host health flags); a host is healthy iff none
  is set. Discovery owns ``FAILED_EDS_HEALTH`` (a config/EDS ``health_status``); the health
  checker and the outlier detector own the others.
* **Load** (active requests, balancer state, stats) is not here: it belongs to each worker's
  runtime ``Host`` (``outrider.upstream.host``).

The discovery side (the main process: DNS now, health checking and outlier ejection later) keeps
one ``ClusterMembership`` per cluster; each of its methods returns the event that describes the
change, or None when nothing changed. Events are small frozen dataclasses, picklable, meant to be
applied in order by every worker's ``Cluster`` (``Cluster.apply``); with one process the cluster
manager applies them in place, through the same code:

* ``MembershipUpdate(cluster, added, removed, initial)``: ``added`` are full ``HostState``s of
  hosts that are new *or changed* (same key, other description or flags): an upsert. ``removed``
  are keys. ``initial``: the hosts it adds belong to the cluster's first (warm) membership, so
  they do not slow-start.
* ``HealthUpdate(cluster, key, health_flags)``: one host's complete new flags (idempotent).
* ``LogicalAddressUpdate(cluster, address)``: a LOGICAL_DNS cluster's one host now connects to
  ``address``. It is the same host (load state, pool, health), so this is not a remove + add:
  Envoy's logical host changes its address in place. Its key follows the address, so events
  after this one name it by the new key.

A worker that (re)starts is sent every cluster's ``snapshot()``: the delta from an empty cluster.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

__all__ = [
    "DISCOVERY_FLAGS",
    "ENVOY_HEALTH_FLAG_NAMES",
    "HEALTHY",
    "ClusterMembership",
    "ClusterUpdate",
    "HealthFlag",
    "HealthUpdate",
    "HostDescription",
    "HostKey",
    "HostState",
    "LogicalAddressUpdate",
    "MembershipUpdate",
    "health_flags_string",
]

# (address, port, priority): the identity of a host within its cluster.
HostKey = tuple[str, int, int]


class HealthFlag(enum.IntFlag):
    """Why a host is out of rotation (Envoy's ``Host::HealthFlag``, same bit values)."""

    FAILED_ACTIVE_HC = 0x01
    FAILED_OUTLIER_CHECK = 0x02
    FAILED_EDS_HEALTH = 0x04


HEALTHY = HealthFlag(0)
# The flags discovery (config, DNS, EDS) decides; ``ClusterMembership.replace`` sets only these
# on hosts that stay, the others are the health checker's and outlier detector's.
DISCOVERY_FLAGS = HealthFlag.FAILED_EDS_HEALTH

# Envoy's spellings in /clusters (``health_flags::/failed_active_hc/failed_outlier_check``).
ENVOY_HEALTH_FLAG_NAMES: dict[HealthFlag, str] = {
    HealthFlag.FAILED_ACTIVE_HC: "/failed_active_hc",
    HealthFlag.FAILED_OUTLIER_CHECK: "/failed_outlier_check",
    HealthFlag.FAILED_EDS_HEALTH: "/failed_eds_health",
}


def health_flags_string(flags: HealthFlag) -> str:
    """``flags`` as Envoy's /clusters prints them: ``healthy``, or the set flags' names
    concatenated in Envoy's order."""
    if not flags:
        return "healthy"
    return "".join(name for flag, name in ENVOY_HEALTH_FLAG_NAMES.items() if flags & flag)


@dataclass(frozen=True, slots=True)
class HostDescription:
    """What a host is: its address and its load-balancing attributes. Immutable."""

    address: str
    port: int
    weight: int = 1
    priority: int = 0
    # (region, zone, sub_zone) and the locality's load_balancing_weight (0 = unset).
    locality: tuple[str, str, str] = ("", "", "")
    locality_weight: int = 0
    # Envoy's hostname: the endpoint's ``hostname`` field, else a DNS endpoint's name.
    hostname: str = ""

    @property
    def key(self) -> HostKey:
        """The host's identity within its cluster: ``(address, port, priority)``."""
        return (self.address, self.port, self.priority)


@dataclass(frozen=True, slots=True)
class HostState:
    """A host as the discovery side knows it: description and health flags."""

    description: HostDescription
    health_flags: HealthFlag = HEALTHY

    @property
    def key(self) -> HostKey:
        return self.description.key

    @property
    def healthy(self) -> bool:
        return not self.health_flags


@dataclass(frozen=True, slots=True)
class MembershipUpdate:
    """Hosts added or changed (full states, upserted by key) and hosts removed (keys)."""

    cluster: str
    added: tuple[HostState, ...]
    removed: tuple[HostKey, ...]
    initial: bool = False


@dataclass(frozen=True, slots=True)
class HealthUpdate:
    """Host ``key`` of ``cluster`` now has exactly ``health_flags``."""

    cluster: str
    key: HostKey
    health_flags: HealthFlag


@dataclass(frozen=True, slots=True)
class LogicalAddressUpdate:
    """The one host of LOGICAL_DNS ``cluster`` now connects to ``address`` (same host)."""

    cluster: str
    address: str


ClusterUpdate = MembershipUpdate | HealthUpdate | LogicalAddressUpdate


class ClusterMembership:
    """The authoritative membership of one cluster, on the side that runs discovery.

    Every change goes through a method that returns the event to publish (None: no change).
    ``hosts`` keeps insertion order (hosts that stay keep their place, new ones go last), the
    order in which a worker that applies the events in turn holds them too.
    """

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self._hosts: dict[HostKey, HostState] = {}

    @property
    def hosts(self) -> dict[HostKey, HostState]:
        """The current states by key (do not edit: use the methods)."""
        return self._hosts

    def replace(self, states: Iterable[HostState], initial: bool = False) -> MembershipUpdate | None:
        """Make ``states`` the membership; the delta from the previous one, or None.

        The order of ``states`` does not matter; of two states with the same key the first
        counts. A host that stays keeps its health flags except ``DISCOVERY_FLAGS``, which
        ``states`` decide; a new host takes the flags it is given.
        """
        current = self._hosts
        wanted: dict[HostKey, HostState] = {}
        for state in states:
            key = state.description.key
            if key in wanted:
                continue
            old = current.get(key)
            if old is not None:
                flags = (old.health_flags & ~DISCOVERY_FLAGS) | (state.health_flags
                                                                 & DISCOVERY_FLAGS)
                if flags != state.health_flags:
                    state = replace(state, health_flags=HealthFlag(flags))
            wanted[key] = state
        removed = tuple(key for key in current if key not in wanted)
        added = tuple(state for key, state in wanted.items() if current.get(key) != state)
        if not added and not removed:
            return None
        for key in removed:
            del current[key]
        for state in added:
            current[state.description.key] = state
        return MembershipUpdate(self.cluster, added, removed, initial)

    def set_health(self, key: HostKey, flag: HealthFlag, failed: bool) -> HealthUpdate | None:
        """Set (``failed``) or clear ``flag`` on host ``key``; None if that changes nothing or
        the host is not (any longer) a member."""
        old = self._hosts.get(key)
        if old is None:
            return None
        flags = old.health_flags | flag if failed else old.health_flags & ~flag
        if flags == old.health_flags:
            return None
        self._hosts[key] = replace(old, health_flags=HealthFlag(flags))
        return HealthUpdate(self.cluster, key, HealthFlag(flags))

    def set_logical_address(self, address: str) -> LogicalAddressUpdate | None:
        """LOGICAL_DNS: the cluster's one host now connects to ``address``; None if it already
        does. The first host of a logical cluster comes from ``replace`` (as initial)."""
        if len(self._hosts) != 1:
            raise ValueError(f"cluster {self.cluster}: a logical address change needs exactly "
                             f"one host, not {len(self._hosts)}")
        [old] = self._hosts.values()
        if old.description.address == address:
            return None
        new = replace(old, description=replace(old.description, address=address))
        self._hosts = {new.description.key: new}
        return LogicalAddressUpdate(self.cluster, address)

    def snapshot(self) -> MembershipUpdate:
        """Everything, as the initial delta from an empty cluster (for a worker that starts)."""
        return MembershipUpdate(self.cluster, tuple(self._hosts.values()), (), initial=True)
