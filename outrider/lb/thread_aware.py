"""Shared skeleton of the hash-based policies (Envoy's ThreadAwareLoadBalancerBase).

Per priority, one immutable lookup structure (a ring or a Maglev table) is built from the level's
healthy hosts — or all its hosts when the level is in panic — in ``refresh``, which the
PrioritySet calls on every change; ``choose_host`` only hashes into it. The request's hash
(``context.compute_hash_key()``, computed once) also picks the priority (``hash % 100``), as in
Envoy; without a hash key a random 64-bit value stands in, making the policy a random one.

Weights are normalized as Envoy does: ``host.weight / Σ weight`` over the level, or, with
``locality_weighted``, ``locality_weight / Σ locality_weight × host.weight / Σ weight in the
locality`` (localities of weight 0 are left out).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from outrider.lb.base import LbStats, LoadBalancerBase, LoadBalancerContext
from outrider.lb.priority import PriorityLevel, PriorityState
from outrider.lb.zone_aware import DEFAULT_COMMON, CommonLbSettings
from outrider.upstream.host import Host, PrioritySet

NormalizedWeights = list[tuple[Host, float]]


class HashTable:
    """A built lookup structure: ``choose(hash64, attempt)`` → Host or None."""

    def choose(self, hash64: int, attempt: int) -> Host | None:  # pragma: no cover
        raise NotImplementedError


class _EmptyTable(HashTable):
    def choose(self, hash64: int, attempt: int) -> Host | None:
        return None


EMPTY_TABLE = _EmptyTable()


def host_hash_key(host: Host, use_hostname: bool) -> str:
    """The string a host is hashed by: its hostname, or ``ip:port`` (``[ip6]:port``)."""
    if use_hostname and host.hostname:
        return host.hostname
    if ":" in host.address:
        return f"[{host.address}]:{host.port}"
    return f"{host.address}:{host.port}"


def _normalize_hosts(hosts: list[Host], scale: float, out: NormalizedWeights) -> None:
    total = sum(h.weight for h in hosts)
    if total <= 0:
        return
    for host in hosts:
        out.append((host, host.weight * scale / total))


def normalize_weights(level: PriorityLevel, locality_weighted: bool) -> NormalizedWeights:
    """``(host, normalized weight)`` pairs of one level, Envoy's normalizeWeights."""
    out: NormalizedWeights = []
    if not locality_weighted:
        _normalize_hosts(level.hosts if level.panic else level.healthy_hosts, 1.0, out)
        return out
    per_locality = level.locality_hosts if level.panic else level.locality_healthy_hosts
    total = sum(level.locality_weights)
    if total == 0:
        return out
    for hosts, weight in zip(per_locality, level.locality_weights, strict=True):
        if weight:
            _normalize_hosts(hosts, weight / total, out)
    return out


class ThreadAwareLoadBalancer(LoadBalancerBase):
    """Hash → priority → per-priority table; subclasses implement ``_build_table``."""

    def __init__(
        self,
        priority_set: PrioritySet,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        stats: LbStats,
        common: CommonLbSettings = DEFAULT_COMMON,
        use_hostname_for_hashing: bool = False,
    ) -> None:
        self._rng = rng
        self._clock = clock
        self._stats = stats
        self._locality_weighted = common.locality_weighted
        self.use_hostname_for_hashing = use_hostname_for_hashing
        self._priority = PriorityState(
            overprovisioning_factor=common.overprovisioning_factor,
            healthy_panic_threshold=common.healthy_panic_threshold,
            locality_weighted=False,  # the tables fold locality weights in themselves
            rng=rng,
        )
        self._tables: list[HashTable] = [EMPTY_TABLE]
        self._panic: list[bool] = [False]
        self.priority_set = priority_set
        priority_set.on_update(self.refresh)
        self.refresh(priority_set)

    @property
    def priority_state(self) -> PriorityState:
        return self._priority

    @property
    def tables(self) -> list[HashTable]:
        """The per-priority lookup structures (for tests and /clusters)."""
        return self._tables

    def refresh(self, priority_set: PrioritySet) -> None:
        """Rebuild every priority's table; the PrioritySet calls this after any change."""
        self._priority.rebuild(priority_set)
        levels = self._priority.levels
        tables: list[HashTable] = []
        for level in levels:
            weights = normalize_weights(level, self._locality_weighted)
            tables.append(self._build_table(weights) if weights else EMPTY_TABLE)
        self._tables = tables
        self._panic = [level.panic for level in levels]

    def _build_table(self, weights: NormalizedWeights) -> HashTable:  # pragma: no cover
        raise NotImplementedError

    def choose_host(self, context: LoadBalancerContext | None) -> Host | None:
        """The host the request's hash maps to (random without a hash key)."""
        hash64 = context.compute_hash_key() if context is not None else None
        if hash64 is None:
            hash64 = self._rng.getrandbits(64)
        priority = self._priority.choose_priority(hash64) if len(self._tables) > 1 else 0
        if self._panic[priority]:
            self._stats.lb_healthy_panic.inc()
        table = self._tables[priority]
        host = table.choose(hash64, 0)
        if context is None or host is None:
            return host
        for attempt in range(1, context.host_selection_retry_max_attempts + 1):
            if not context.should_select_another_host(host):
                return host
            host = table.choose(hash64, attempt)
        return host
