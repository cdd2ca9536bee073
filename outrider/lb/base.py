"""The load-balancer interface.

``choose_host(context)`` is called once per upstream request (and per retry) on the hot path;
it must not do I/O or allocate more than it must. Policies take an injected ``random.Random``
and ``clock`` (a zero-argument callable returning seconds) so tests are deterministic.

The router's side of the contract (Envoy's router does the same):

* call ``choose_host(context)`` once per attempt; ``None`` means "no healthy upstream" (503, UH);
* ``host.active_requests += 1`` when a request is assigned to the host and ``-= 1`` when it ends
  (LEAST_REQUEST and peak EWMA read it);
* ``on_request_complete(host, rtt_seconds, success)`` when the upstream response finishes (or
  the attempt fails), with the time from sending the request to the end of the response headers;
  peak EWMA learns latency from it, the other policies ignore it.
"""

from __future__ import annotations

from typing import Protocol

from outrider.stats.store import StatsStruct
from outrider.upstream.host import Host


class LoadBalancerContext(Protocol):
    """What the router tells a load balancer about the request (Envoy's LoadBalancerContext)."""

    def compute_hash_key(self) -> int | None:
        """A 64-bit hash from the route's hash_policy, or None (then hash policies pick randomly)."""

    def should_select_another_host(self, host: Host) -> bool:
        """True to reject ``host`` (e.g. the retry predicate ``previous_hosts``)."""

    @property
    def host_selection_retry_max_attempts(self) -> int:
        """How many times choose_host may re-pick when should_select_another_host says so.

        As Envoy's ``hostSelectionRetryCount()``: choose_host makes at most this many + 1 picks.
        """


class LoadBalancer(Protocol):
    def choose_host(self, context: LoadBalancerContext | None) -> Host | None:
        """A host for this request, or None when the cluster has none to offer."""

    def on_request_complete(self, host: Host, rtt_seconds: float, success: bool) -> None:
        """An upstream request to ``host`` finished after ``rtt_seconds`` (success = no reset
        and no 5xx). Cheap; never raises."""


class LbStats(StatsStruct):
    """Per-cluster load-balancer stats, Envoy's names (``cluster.<name>.lb_healthy_panic``).

    Built by the caller: ``LbStats(store.scope("cluster.<name>"))``.
    """

    COUNTERS = ("lb_healthy_panic",)


class LoadBalancerBase:
    """Default hooks shared by every policy."""

    __slots__ = ()

    def choose_host(self, context: LoadBalancerContext | None) -> Host | None:  # pragma: no cover
        raise NotImplementedError

    def on_request_complete(self, host: Host, rtt_seconds: float, success: bool) -> None:
        """No-op except for latency-aware policies."""
