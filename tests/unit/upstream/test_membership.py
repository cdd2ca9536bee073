"""ClusterMembership (the discovery side's membership): the deltas it emits, and the events as
they cross a process boundary (pickle)."""

from __future__ import annotations

import pickle

import pytest

from outrider.upstream.membership import (
    HEALTHY,
    ClusterMembership,
    HealthFlag,
    HealthUpdate,
    HostDescription,
    HostState,
    LogicalAddressUpdate,
    MembershipUpdate,
    health_flags_string,
)

FAILED_HC = HealthFlag.FAILED_ACTIVE_HC
OUTLIER = HealthFlag.FAILED_OUTLIER_CHECK
EDS = HealthFlag.FAILED_EDS_HEALTH


def state(address: str, port: int = 80, flags: HealthFlag = HEALTHY, **fields) -> HostState:
    return HostState(HostDescription(address, port, **fields), flags)


def filled(*states: HostState) -> ClusterMembership:
    membership = ClusterMembership("c")
    membership.replace(states, initial=True)
    return membership


# -- descriptions and flags -------------------------------------------------------------------------

def test_description_key_is_address_port_priority():
    d = HostDescription("10.0.0.1", 80, weight=5, priority=2, locality=("r", "z", ""),
                        locality_weight=3, hostname="h")
    assert d.key == ("10.0.0.1", 80, 2)
    assert HostState(d).key == d.key


def test_descriptions_are_immutable_values():
    d = HostDescription("10.0.0.1", 80)
    with pytest.raises(AttributeError):
        d.weight = 2  # type: ignore[misc]
    assert d == HostDescription("10.0.0.1", 80, weight=1) and hash(d) == hash(
        HostDescription("10.0.0.1", 80))
    assert not hasattr(d, "__dict__")


def test_healthy_iff_no_flag():
    assert state("a").healthy
    assert not state("a", flags=OUTLIER).healthy


@pytest.mark.parametrize(("flags", "text"), [
    (HEALTHY, "healthy"),
    (FAILED_HC, "/failed_active_hc"),
    (OUTLIER, "/failed_outlier_check"),
    (EDS, "/failed_eds_health"),
    (FAILED_HC | OUTLIER | EDS, "/failed_active_hc/failed_outlier_check/failed_eds_health"),
])
def test_envoy_spellings(flags, text):
    assert health_flags_string(flags) == text


def test_flags_have_envoys_bit_values():
    assert (int(FAILED_HC), int(OUTLIER), int(EDS)) == (1, 2, 4)


# -- replace --------------------------------------------------------------------------------------

def test_first_replace_adds_everything():
    membership = ClusterMembership("c")
    update = membership.replace([state("10.0.0.1"), state("10.0.0.2")], initial=True)
    assert update == MembershipUpdate("c", (state("10.0.0.1"), state("10.0.0.2")), (),
                                      initial=True)
    assert list(membership.hosts) == [("10.0.0.1", 80, 0), ("10.0.0.2", 80, 0)]


def test_replace_reports_added_and_removed():
    membership = filled(state("10.0.0.1"), state("10.0.0.2"))
    update = membership.replace([state("10.0.0.2"), state("10.0.0.3")])
    assert update == MembershipUpdate("c", (state("10.0.0.3"),), (("10.0.0.1", 80, 0),))
    assert not update.initial
    assert list(membership.hosts) == [("10.0.0.2", 80, 0), ("10.0.0.3", 80, 0)]


def test_changed_description_is_in_added_under_the_same_key():
    membership = filled(state("10.0.0.1"), state("10.0.0.2"))
    update = membership.replace([state("10.0.0.1", weight=5), state("10.0.0.2")])
    assert update == MembershipUpdate("c", (state("10.0.0.1", weight=5),), ())
    assert membership.hosts[("10.0.0.1", 80, 0)].description.weight == 5


def test_a_new_priority_or_port_is_another_host():
    membership = filled(state("10.0.0.1"))
    update = membership.replace([state("10.0.0.1", priority=1), state("10.0.0.1", 81)])
    assert update.removed == (("10.0.0.1", 80, 0),)
    assert [s.key for s in update.added] == [("10.0.0.1", 80, 1), ("10.0.0.1", 81, 0)]


def test_same_hosts_in_another_order_is_no_change():
    membership = filled(state("10.0.0.1"), state("10.0.0.2"), state("10.0.0.3"))
    assert membership.replace([state("10.0.0.3"), state("10.0.0.1"), state("10.0.0.2")]) is None
    assert list(membership.hosts) == [("10.0.0.1", 80, 0), ("10.0.0.2", 80, 0),
                                      ("10.0.0.3", 80, 0)]


def test_repeated_key_counts_once_first_wins():
    membership = ClusterMembership("c")
    update = membership.replace([state("10.0.0.1", weight=2), state("10.0.0.1", weight=9)])
    assert update.added == (state("10.0.0.1", weight=2),)


def test_replace_with_nothing_removes_everything():
    membership = filled(state("10.0.0.1"), state("10.0.0.2"))
    update = membership.replace([])
    assert update == MembershipUpdate("c", (), (("10.0.0.1", 80, 0), ("10.0.0.2", 80, 0)))
    assert membership.hosts == {}
    assert ClusterMembership("c").replace([]) is None


def test_new_hosts_keep_their_flags():
    membership = ClusterMembership("c")
    update = membership.replace([state("10.0.0.1", flags=EDS | FAILED_HC)])
    assert update.added[0].health_flags == EDS | FAILED_HC


def test_replace_keeps_health_checker_flags_and_sets_discovery_flags():
    membership = filled(state("10.0.0.1"))
    membership.set_health(("10.0.0.1", 80, 0), FAILED_HC, True)
    # DNS knows nothing of active health checks: an answer does not clear them...
    assert membership.replace([state("10.0.0.1")]) is None
    # ...but it decides FAILED_EDS_HEALTH (config / EDS health_status).
    update = membership.replace([state("10.0.0.1", flags=EDS)])
    assert update.added == (state("10.0.0.1", flags=FAILED_HC | EDS),)
    update = membership.replace([state("10.0.0.1")])
    assert update.added == (state("10.0.0.1", flags=FAILED_HC),)


# -- health ---------------------------------------------------------------------------------------

def test_set_and_clear_a_flag():
    membership = filled(state("10.0.0.1"))
    key = ("10.0.0.1", 80, 0)
    assert membership.set_health(key, OUTLIER, True) == HealthUpdate("c", key, OUTLIER)
    assert membership.set_health(key, OUTLIER, True) is None  # already set
    assert membership.set_health(key, FAILED_HC, True) == HealthUpdate("c", key,
                                                                       OUTLIER | FAILED_HC)
    assert membership.set_health(key, OUTLIER, False) == HealthUpdate("c", key, FAILED_HC)
    assert membership.set_health(key, OUTLIER, False) is None  # already clear
    assert membership.set_health(key, FAILED_HC, False) == HealthUpdate("c", key, HEALTHY)
    assert membership.hosts[key].healthy


def test_health_of_an_unknown_host_is_no_update():
    membership = filled(state("10.0.0.1"))
    assert membership.set_health(("10.9.9.9", 80, 0), FAILED_HC, True) is None


def test_health_shows_in_later_snapshots():
    membership = filled(state("10.0.0.1"), state("10.0.0.2"))
    membership.set_health(("10.0.0.2", 80, 0), OUTLIER, True)
    assert membership.snapshot().added == (state("10.0.0.1"), state("10.0.0.2", flags=OUTLIER))


# -- logical address ----------------------------------------------------------------------------------

def test_logical_address_change():
    membership = filled(state("10.0.0.1", hostname="svc.test"))
    membership.set_health(("10.0.0.1", 80, 0), OUTLIER, True)
    assert membership.set_logical_address("10.0.0.1") is None
    assert membership.set_logical_address("10.0.0.7") == LogicalAddressUpdate("c", "10.0.0.7")
    # Same host, new address (and so a new key); its health stays.
    assert membership.hosts == {("10.0.0.7", 80, 0): state("10.0.0.7", hostname="svc.test",
                                                            flags=OUTLIER)}


def test_logical_address_needs_one_host():
    with pytest.raises(ValueError, match="exactly one host"):
        ClusterMembership("c").set_logical_address("10.0.0.1")


# -- snapshot -------------------------------------------------------------------------------------

def test_snapshot_is_everything_as_initial():
    membership = filled(state("10.0.0.1"), state("10.0.0.2", weight=3))
    membership.replace([state("10.0.0.2", weight=3), state("10.0.0.3")])
    assert membership.snapshot() == MembershipUpdate(
        "c", (state("10.0.0.2", weight=3), state("10.0.0.3")), (), initial=True)
    assert ClusterMembership("c").snapshot() == MembershipUpdate("c", (), (), initial=True)


# -- across processes -------------------------------------------------------------------------------

@pytest.mark.parametrize("event", [
    MembershipUpdate("c", (state("10.0.0.1", 8080, weight=3, priority=1,
                                 locality=("r", "z", "s"), locality_weight=2,
                                 hostname="svc.test", flags=EDS | OUTLIER),
                           state("2001:db8::1")), (("10.0.0.9", 80, 0),), initial=True),
    MembershipUpdate("c", (), ()),
    HealthUpdate("c", ("10.0.0.1", 80, 0), FAILED_HC | OUTLIER),
    HealthUpdate("c", ("10.0.0.1", 80, 0), HEALTHY),
    LogicalAddressUpdate("c", "10.0.0.7"),
], ids=["membership", "empty-membership", "health", "healthy", "logical-address"])
def test_events_survive_pickling(event):
    for protocol in (pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        copy = pickle.loads(pickle.dumps(event, protocol))
        assert copy == event and type(copy) is type(event)
    if isinstance(event, HealthUpdate):
        assert type(pickle.loads(pickle.dumps(event)).health_flags) is HealthFlag


def test_events_are_immutable():
    update = HealthUpdate("c", ("10.0.0.1", 80, 0), FAILED_HC)
    with pytest.raises(AttributeError):
        update.health_flags = HEALTHY  # type: ignore[misc]
