"""MAGLEV: Envoy's Maglev lookup table (Eisenbud et al., NSDI 2016), weighted.

Hosts are sorted by hash key (``ip:port`` or hostname) for a stable build order. Each host's
permutation is ``(offset + skip × j) % M`` with ``offset = XXH64(key, seed 0) % M`` and
``skip = XXH64(key, seed 1) % (M - 1) + 1``; hosts take turns claiming their next free slot, a
host of normalized weight w taking a turn only in rounds where ``round × w ≥`` its running
target (which grows by the maximum weight per claim). Lookup is ``table[hash % M]``; a retry
attempt a looks up ``hash ^ (2^64 - a)``.
"""

from __future__ import annotations

from array import array

import xxhash

from outrider.lb.thread_aware import (
    HashTable,
    NormalizedWeights,
    ThreadAwareLoadBalancer,
    host_hash_key,
)
from outrider.upstream.host import Host

_MASK64 = (1 << 64) - 1


class MaglevTable(HashTable):
    """``table_size`` slots, each holding an index into ``hosts``."""

    __slots__ = ("hosts", "max_entries_per_host", "min_entries_per_host", "size", "table")

    def __init__(self, weights: NormalizedWeights, table_size: int, use_hostname: bool) -> None:
        keyed = sorted(((host_hash_key(h, use_hostname), i) for i, (h, _) in enumerate(weights)))
        m = table_size
        xxh = xxhash.xxh64_intdigest
        hosts: list[Host] = []
        offsets: list[int] = []
        skips: list[int] = []
        host_weights: list[float] = []
        for key, i in keyed:
            data = key.encode()
            hosts.append(weights[i][0])
            host_weights.append(weights[i][1])
            offsets.append(xxh(data) % m)
            skips.append(xxh(data, 1) % (m - 1) + 1)
        max_weight = max(host_weights)
        n = len(hosts)
        nexts = [0] * n
        targets = [0.0] * n
        counts = [0] * n
        table = array("i", [-1]) * m
        filled = 0
        iteration = 1
        while filled < m:
            for i in range(n):
                if filled >= m:
                    break
                if iteration * host_weights[i] < targets[i]:
                    continue
                targets[i] += max_weight
                offset, skip, j = offsets[i], skips[i], nexts[i]
                c = (offset + skip * j) % m
                while table[c] >= 0:
                    j += 1
                    c = (offset + skip * j) % m
                table[c] = i
                nexts[i] = j + 1
                counts[i] += 1
                filled += 1
            iteration += 1
        self.hosts = hosts
        self.table = table
        self.size = m
        self.min_entries_per_host = min(counts)
        self.max_entries_per_host = max(counts)

    def entry_counts(self) -> dict[Host, int]:
        """How many slots each host owns (for tests and /clusters)."""
        counts = [0] * len(self.hosts)
        for i in self.table:
            counts[i] += 1
        return {h: counts[i] for i, h in enumerate(self.hosts)}

    def choose(self, hash64: int, attempt: int) -> Host | None:
        if attempt:
            hash64 ^= (_MASK64 - attempt + 1) & _MASK64
        return self.hosts[self.table[hash64 % self.size]]


class MaglevLoadBalancer(ThreadAwareLoadBalancer):
    """Consistent hashing through a Maglev table per priority."""

    def __init__(self, *args, table_size: int = 65537, **kwargs) -> None:
        self.table_size = table_size
        scope = kwargs["stats"].scope.scope("maglev_lb")
        self._min_gauge = scope.gauge("min_entries_per_host", shared=True)
        self._max_gauge = scope.gauge("max_entries_per_host", shared=True)
        super().__init__(*args, **kwargs)

    def _build_table(self, weights: NormalizedWeights) -> HashTable:
        table = MaglevTable(weights, self.table_size, self.use_hostname_for_hashing)
        self._min_gauge.set(table.min_entries_per_host)
        self._max_gauge.set(table.max_entries_per_host)
        return table
