"""RING_HASH: Envoy's ketama-style consistent-hash ring, with xxHash (XXH64, seed 0).

Each host gets ``scale × normalized_weight`` points named ``"<ip:port>_<i>"``, where
``scale = min(ceil(min_w × minimum_ring_size) / min_w, maximum_ring_size)`` so that the lightest
host gets a whole number of points; running sums spread fractional points as Envoy does. A key
maps to the first point at or after its hash (wrapping to the start): a binary search.
Removing one of N equally weighted hosts moves only the keys that host owned (≈ 1/N).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left

import xxhash

from outrider.lb.thread_aware import (
    HashTable,
    NormalizedWeights,
    ThreadAwareLoadBalancer,
    host_hash_key,
)
from outrider.upstream.host import Host


class Ring(HashTable):
    """Sorted 64-bit points and the host owning each."""

    __slots__ = ("hashes", "hosts", "indices", "max_hashes_per_host", "min_hashes_per_host")

    def __init__(self, weights: NormalizedWeights, min_ring_size: int, max_ring_size: int,
                 use_hostname: bool) -> None:
        min_weight = min(w for _, w in weights)
        scale = min(math.ceil(min_weight * min_ring_size) / min_weight, float(max_ring_size))
        xxh = xxhash.xxh64_intdigest
        points: list[tuple[int, int]] = []
        current = 0.0
        target = 0.0
        counts: list[int] = []
        for index, (host, weight) in enumerate(weights):
            prefix = host_hash_key(host, use_hostname) + "_"
            target += scale * weight
            i = 0
            while current < target:
                points.append((xxh(f"{prefix}{i}".encode()), index))
                i += 1
                current += 1
            counts.append(i)
        points.sort()
        self.hashes = array("Q", [p[0] for p in points])
        self.indices = array("I", [p[1] for p in points])
        self.hosts: list[Host] = [host for host, _ in weights]
        self.min_hashes_per_host = min(counts)
        self.max_hashes_per_host = max(counts)

    def __len__(self) -> int:
        return len(self.hashes)

    def choose(self, hash64: int, attempt: int) -> Host | None:
        size = len(self.hashes)
        if not size:
            return None
        i = bisect_left(self.hashes, hash64)
        if i == size:
            i = 0
        if attempt:
            i = (i + attempt) % size
        return self.hosts[self.indices[i]]


class RingHashLoadBalancer(ThreadAwareLoadBalancer):
    """Consistent hashing over a weighted ring per priority."""

    def __init__(self, *args, minimum_ring_size: int = 1024,
                 maximum_ring_size: int = 8 * 1024 * 1024, **kwargs) -> None:
        if minimum_ring_size > maximum_ring_size:
            raise ValueError(f"ring hash: minimum_ring_size ({minimum_ring_size}) > "
                             f"maximum_ring_size ({maximum_ring_size})")
        self.minimum_ring_size = minimum_ring_size
        self.maximum_ring_size = maximum_ring_size
        stats = kwargs["stats"]
        scope = stats.scope.scope("ring_hash_lb")
        self._size_gauge = scope.gauge("size", shared=True)
        self._min_gauge = scope.gauge("min_hashes_per_host", shared=True)
        self._max_gauge = scope.gauge("max_hashes_per_host", shared=True)
        super().__init__(*args, **kwargs)

    def _build_table(self, weights: NormalizedWeights) -> HashTable:
        ring = Ring(weights, self.minimum_ring_size, self.maximum_ring_size,
                    self.use_hostname_for_hashing)
        self._size_gauge.set(len(ring))
        self._min_gauge.set(ring.min_hashes_per_host)
        self._max_gauge.set(ring.max_hashes_per_host)
        return ring
