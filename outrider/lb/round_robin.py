"""ROUND_ROBIN: smooth weighted round robin (Envoy's RoundRobinLoadBalancer).

Equal weights: plain rotation from a per-worker random offset. Unequal weights or hosts in slow
start: EDF, so a=3, b=1 yields a a b a rather than a a a b.
"""

from __future__ import annotations

from outrider.lb.zone_aware import EdfLoadBalancer, _EdfSourceState
from outrider.upstream.host import Host


class RoundRobinLoadBalancer(EdfLoadBalancer):
    """Weighted smooth round robin with slow start."""

    def _unweighted_pick(self, hosts: list[Host], state: _EdfSourceState) -> Host:
        index = state.rr_index
        state.rr_index = index + 1
        return hosts[index % len(hosts)]
