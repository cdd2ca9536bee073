"""Check a loaded bootstrap against what Outrider implements, and for mistakes Envoy lets by.

Contract::

    issues = validate(loaded, allow_unimplemented=False)   # list[ConfigIssue], in file order
    for issue in issues: print(issue)   # envoy.yaml:41: error: static_resources.clusters[0]...

Severities:

* "error", unimplemented: a field the user set that Outrider does not implement (it would be
  silently ignored), an extension ``@type`` or enum value it does not implement. With
  ``allow_unimplemented=True`` these become warnings, so a user can run anyway, knowingly,
  except where ignoring them would weaken security (:mod:`outrider.config.security`: a TLS
  transport socket, filter-chain matching, a filter that can deny traffic or sets identity
  headers, a route match condition): those stay errors.
* "warning": a listener Outrider cannot serve at all (no HTTP connection manager, e.g. tcp_proxy
  or redis, or no network filter at all; UDP; an internal listener) is named and skipped, when
  ``allow_unimplemented=True`` or when nothing in it is an error (Envoy accepts a filter chain
  without filters); :func:`unservable_listeners` lists them for the caller to drop.
* "error", unbuildable: the HTTP connection manager or cluster settings cannot be built from the
  config (an invalid regex, say), found here rather than at start.
* "error", semantic (never downgraded): an HCM whose router filter is missing or not last
  (requests would hang, Envoy #4045), a filter without ``typed_config``, a route naming an
  undefined cluster (unless ``validate_clusters: false``), a weighted cluster without a weight
  or with weights summing to 0, duplicate listener names or addresses,
  duplicate cluster names, a STATIC cluster endpoint that is not an IP address.
* "warning": accepted but without effect yet (``supported.ignored`` fields),
  ``load_balancing_policy`` entries skipped in favour of a later one Outrider implements, and a
  bootstrap with neither listeners nor admin (Envoy runs it, doing nothing).

The table of implemented fields is :mod:`outrider.config.supported`. The caller decides what to
do with errors (the CLI refuses to start when any remain).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from google.protobuf import any_pb2
from google.protobuf.message import Message

from outrider.config import typed
from outrider.config.constraints import join
from outrider.config.errors import ConfigIssue, Severity
from outrider.config.loader import LoadedConfig
from outrider.config.security import STAYS_AN_ERROR, guard_reason, security_reason
from outrider.config.supported import EXTENSIONS, HCM, LEAF_TYPES, ROUTER, SUPPORTED, Rule

NOT_IMPLEMENTED = "not implemented by Outrider yet (it would be ignored)"
# Listener kinds Outrider lacks: the field's error and the reason the listener is skipped.
_LISTENER_KINDS = {
    "internal_listener": "internal listeners are not implemented by Outrider",
    "api_listener": "API listeners are not implemented by Outrider",
}
_LB_POLICY = "envoy.config.cluster.v3.LoadBalancingPolicy"


def validate(loaded: LoadedConfig, allow_unimplemented: bool = False) -> list[ConfigIssue]:
    """Every issue in ``loaded``, sorted by line (issues without a line last)."""
    checker = _Validator(loaded, allow_unimplemented)
    checker.walk(loaded.bootstrap, loaded.bootstrap.DESCRIPTOR.full_name, "")
    checker.semantics()
    if not has_errors(checker.issues):  # a last check; earlier errors explain any failure here
        checker.buildable()
    for index, reason in unservable_listeners(loaded.bootstrap):
        path = f"static_resources.listeners[{index}]"
        refused = any(i.severity == "error" and (i.field_path == path
                                                 or i.field_path.startswith(f"{path}."))
                      for i in checker.issues)
        if allow_unimplemented or not refused:  # else the errors already say why
            name = loaded.bootstrap.static_resources.listeners[index].name
            checker.report("warning", path, f"listener '{name}' is skipped: {reason}")
    issues = checker.issues
    issues.sort(key=lambda i: (i.line is None, i.line or 0))
    return issues


def has_errors(issues: list[ConfigIssue]) -> bool:
    """True when any issue is an error."""
    return any(issue.severity == "error" for issue in issues)


def unservable_listeners(bootstrap: Message) -> list[tuple[int, str]]:
    """``(index, reason)`` of each static listener Outrider cannot serve at all.

    A listener is served through an HTTP connection manager on a TCP socket address; anything
    else (tcp_proxy, redis and other network filters, UDP, internal or API listeners, pipes)
    has nothing in Outrider to run it. With ``--allow-unimplemented`` the caller drops these
    (after the warning ``validate`` gives) instead of failing at start.
    """
    found = []
    for i, listener in enumerate(bootstrap.static_resources.listeners):  # type: ignore[attr-defined]
        reason = _unservable_reason(listener)
        if reason:
            found.append((i, reason))
    return found


def _unservable_reason(listener: Message) -> str:
    for kind, reason in _LISTENER_KINDS.items():
        if listener.HasField(kind):
            return reason
    address = listener.address  # type: ignore[attr-defined]
    if not address.HasField("socket_address"):
        kind = address.WhichOneof("address") or "no address"
        return f"{kind} listener addresses are not implemented by Outrider"
    if address.socket_address.protocol != 0:  # TCP
        return "UDP listeners are not implemented by Outrider"
    kinds: list[str] = []
    for chain in listener.filter_chains:  # type: ignore[attr-defined]
        for network_filter in chain.filters:
            kind = typed.extension_type(network_filter.typed_config) or network_filter.name
            if kind == HCM:
                return ""
            kinds.append(kind)
    if not kinds:
        return "it has no network filters"
    return f"its network filters ({', '.join(dict.fromkeys(kinds))}) are not implemented by Outrider"


class _Validator:
    def __init__(self, loaded: LoadedConfig, allow_unimplemented: bool) -> None:
        self.loaded = loaded
        self.allow_unimplemented = allow_unimplemented
        self.issues: list[ConfigIssue] = []

    # -- reporting -------------------------------------------------------------------------------

    def report(self, severity: Severity, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(severity, path, self.loaded.line_of(path), message,
                                       self.loaded.path))

    def unimplemented(self, path: str, message: str = NOT_IMPLEMENTED,
                      weakens_security: str = "") -> None:
        """An unimplemented setting: an error, or a warning with ``allow_unimplemented``.

        ``weakens_security`` says why ignoring it would weaken security; then it stays an error.
        """
        if weakens_security:
            self.report("error", path, f"{message}; {STAYS_AN_ERROR}: {weakens_security}"
                        if self.allow_unimplemented else f"{message}: {weakens_security}")
            return
        self.report("warning" if self.allow_unimplemented else "error", path, message)

    # -- the table walk --------------------------------------------------------------------------

    def walk(self, msg: Message, table: str, path: str) -> None:
        """Check every set field of ``msg`` against ``SUPPORTED[table]``."""
        if table == _LB_POLICY:
            self.walk_lb_policy(msg, path)
            return
        rules = SUPPORTED.get(table, {})
        for fd, value in msg.ListFields():
            child = join(path, fd.name)
            rule = rules.get(fd.name)
            if rule is None:
                self.unimplemented(child, _LISTENER_KINDS.get(fd.name, NOT_IMPLEMENTED),
                                   security_reason(msg, fd.name, value) or "")
                continue
            if rule.status == "ignored":
                self.report("warning", child, f"accepted but ignored: {rule.note}")
                continue
            if rule.status == "inert":
                continue
            label = getattr(msg, "name", "") if fd.name == "typed_config" else ""
            element = fd
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                element = fd.message_type.fields_by_name["value"]
            for item, item_path in _elements(fd, value, child):
                if element.enum_type is not None:
                    self.check_enum(item, element.enum_type, rule, item_path)
                elif element.message_type is not None:
                    self.descend(item, rule, item_path, label)

    def descend(self, item: Message, rule: Rule, path: str, label: str = "") -> None:
        name = item.DESCRIPTOR.full_name
        if name == "google.protobuf.Any":
            self.check_any(item, rule.slot or "", path, label)  # type: ignore[arg-type]
        elif name not in LEAF_TYPES:
            self.walk(item, rule.table or name, path)

    def check_enum(self, number: int, enum, rule: Rule, path: str) -> None:
        if rule.enums is None:
            return
        value = enum.values_by_number.get(number)
        name = value.name if value is not None else str(number)
        if name not in rule.enums:
            allowed = ", ".join(sorted(rule.enums))
            self.unimplemented(path, f"{name} is not implemented by Outrider (supported: {allowed})")

    def check_any(self, packed: any_pb2.Any, slot: str, path: str, label: str = "") -> bool:
        """Check an extension config; True when Outrider implements its type."""
        etype = typed.extension_type(packed)
        if not etype:
            return False  # an unset typed_config is a semantic problem reported elsewhere
        named = f"{etype} ('{label}')" if label and label != etype else etype
        if etype not in EXTENSIONS.get(slot, ()):
            self.unimplemented(path, f"{named} is not implemented by Outrider",
                               guard_reason(etype))
            return False
        if typed.is_typed_struct(packed):
            return True  # a Python extension's free-form value: its factory validates it
        inner = typed.unpack(packed)
        if inner is None:
            self.report("error", path, f"cannot decode a {etype} from its typed_config")
            return False
        self.walk(inner, inner.DESCRIPTOR.full_name, path)
        return True

    def walk_lb_policy(self, msg: Message, path: str) -> None:
        """Envoy uses the first policy it implements; so does Outrider, warning about the skipped."""
        policies = list(msg.policies)  # type: ignore[attr-defined]
        slot = SUPPORTED["load balancing policy"]["typed_config"].slot or ""
        chosen = next((i for i, p in enumerate(policies)
                       if typed.extension_type(p.typed_extension_config.typed_config)
                       in EXTENSIONS.get(slot, ())), None)
        for i, policy in enumerate(policies):
            item = f"{join(path, 'policies')}[{i}]"
            config = policy.typed_extension_config
            if chosen is None or i == chosen:
                self.walk(policy, "envoy.config.cluster.v3.LoadBalancingPolicy.Policy", item)
            elif i < chosen:
                etype = typed.extension_type(config.typed_config) or "(no typed_config)"
                self.report("warning", item, f"{etype} is not implemented by Outrider; "
                            f"using policies[{chosen}] instead, as Envoy would")

    # -- semantic checks -------------------------------------------------------------------------

    def semantics(self) -> None:
        bootstrap = self.loaded.bootstrap
        static = bootstrap.static_resources
        base = "static_resources"
        if not static.listeners and not bootstrap.HasField("admin") and not bootstrap.HasField(
                "dynamic_resources"):
            self.report("warning", "", "no listeners and no admin: there is nothing to serve "
                        "(Envoy runs such a bootstrap, doing nothing)")
        cluster_names: dict[str, int] = {}
        for i, cluster in enumerate(static.clusters):
            path = f"{base}.clusters[{i}]"
            if cluster.name in cluster_names:
                self.report("error", join(path, "name"), f"duplicate cluster '{cluster.name}' "
                            f"(also {base}.clusters[{cluster_names[cluster.name]}])")
            cluster_names.setdefault(cluster.name, i)
            self.check_static_endpoints(cluster, path)
        names: dict[str, int] = {}
        addresses: dict[tuple[str, int], int] = {}
        for i, listener in enumerate(static.listeners):
            path = f"{base}.listeners[{i}]"
            if listener.name and listener.name in names:
                self.report("error", join(path, "name"), f"duplicate listener name "
                            f"'{listener.name}' (also {base}.listeners[{names[listener.name]}])")
            names.setdefault(listener.name, i)
            sock = listener.address.socket_address
            if listener.address.HasField("socket_address"):
                key = (_normalise_ip(sock.address), sock.port_value)
                if key in addresses and sock.port_value != 0:
                    self.report("error", join(path, "address"), f"duplicate listener address "
                                f"{sock.address}:{sock.port_value} (also "
                                f"{base}.listeners[{addresses[key]}])")
                addresses.setdefault(key, i)
            for hcm_path, hcm in self.connection_managers(listener, path):
                self.check_http_filters(hcm, hcm_path)
                self.check_route_clusters(hcm, hcm_path, cluster_names)

    def buildable(self) -> None:
        """Build what the server builds at start from each served HCM and each cluster.

        What Envoy refuses at that stage (an invalid regex, a bad rewrite) is then reported by
        ``--mode validate`` with its path, not found as a traceback when serving.
        """
        from outrider.http.conn_manager_config import ConnectionManagerConfig
        from outrider.upstream.cluster import ClusterSettings

        static = self.loaded.bootstrap.static_resources
        for i, listener in enumerate(static.listeners):
            if _unservable_reason(listener):
                continue
            for hcm_path, hcm in self.connection_managers(listener, f"static_resources."
                                                          f"listeners[{i}]", quiet=True):
                self.build(ConnectionManagerConfig.from_proto, hcm, hcm_path)
        for i, cluster in enumerate(static.clusters):
            self.build(ClusterSettings.from_proto, cluster, f"static_resources.clusters[{i}]")

    def build(self, factory, config: Message, path: str) -> None:
        try:
            factory(config)
        except Exception as error:  # noqa: BLE001 - whatever the factory raises is reported
            detail = str(error) or type(error).__name__
            self.report("error", path, f"cannot be built: {detail}")

    def connection_managers(self, listener: Message, path: str,
                            quiet: bool = False) -> Iterator[tuple[str, Message]]:
        """Each HCM in the listener's filter chains; reports filters without typed_config."""
        for c, chain in enumerate(listener.filter_chains):  # type: ignore[attr-defined]
            for f, network_filter in enumerate(chain.filters):
                filter_path = f"{path}.filter_chains[{c}].filters[{f}]"
                if not network_filter.HasField("typed_config"):
                    if not quiet:
                        self.report("error", filter_path, f"filter '{network_filter.name}' has "
                                    "no typed_config; Envoy no longer finds extensions by name")
                    continue
                if typed.extension_type(network_filter.typed_config) == HCM:
                    hcm = typed.unpack(network_filter.typed_config)
                    if hcm is not None:
                        yield join(filter_path, "typed_config"), hcm

    def check_http_filters(self, hcm: Message, path: str) -> None:
        filters = list(hcm.http_filters)  # type: ignore[attr-defined]
        hang = "requests would hang until the stream idle timeout (Envoy issue #4045)"
        if not filters:
            self.report("error", path, f"no http_filters: add envoy.filters.http.router, "
                        f"or {hang}")
            return
        routers = []
        untyped = False
        for i, http_filter in enumerate(filters):
            item = f"{path}.http_filters[{i}]"
            if not http_filter.HasField("typed_config"):
                untyped = True
                self.report("error", item, f"http filter '{http_filter.name}' has no "
                            "typed_config; Envoy no longer finds extensions by name")
            elif typed.extension_type(http_filter.typed_config) == ROUTER:
                routers.append(i)
        if untyped:
            return  # which one is the router is unknowable; the error above says what to fix
        if not routers:
            self.report("error", join(path, "http_filters"),
                        f"no envoy.filters.http.router filter: {hang}")
        elif routers[0] != len(filters) - 1:
            self.report("error", f"{path}.http_filters[{routers[0]}]",
                        "the router filter must be the last http filter (filters after it "
                        "never see the request)")

    def check_route_clusters(self, hcm: Message, path: str, clusters: dict[str, int]) -> None:
        if not hcm.HasField("route_config"):
            return
        config = hcm.route_config  # type: ignore[attr-defined]
        if config.HasField("validate_clusters") and not config.validate_clusters.value:
            return
        base = join(path, "route_config")
        for v, vhost in enumerate(config.virtual_hosts):
            for r, route in enumerate(vhost.routes):
                route_path = f"{base}.virtual_hosts[{v}].routes[{r}].route"
                if not route.HasField("route"):
                    continue
                action = route.route
                named: list[tuple[str, str]] = []
                if action.cluster:
                    named.append((action.cluster, join(route_path, "cluster")))
                if action.HasField("weighted_clusters"):
                    named += self.check_weights(action.weighted_clusters,
                                                join(route_path, "weighted_clusters"))
                for name, field_path in named:
                    if name and name not in clusters:
                        self.report("error", field_path, f"unknown cluster '{name}'")

    def check_weights(self, weighted: Message, path: str) -> list[tuple[str, str]]:
        """Envoy's load-time weight checks; returns ``(cluster name, field path)`` pairs."""
        named = []
        total = 0
        for w, cluster in enumerate(weighted.clusters):  # type: ignore[attr-defined]
            item = f"{path}.clusters[{w}]"
            named.append((cluster.name, join(item, "name")))
            if not cluster.HasField("weight"):
                self.report("error", item, "weight is required")  # as Envoy 1.40
            total += cluster.weight.value
        if total == 0 and len(named) > 0:
            self.report("error", path, "the sum of the weights must be greater than 0")
        return named

    def check_static_endpoints(self, cluster: Message, path: str) -> None:
        if cluster.type != 0 or cluster.HasField("cluster_type"):  # type: ignore[attr-defined]
            return  # only STATIC (0) needs literal IPs; DNS clusters resolve names
        assignment = cluster.load_assignment  # type: ignore[attr-defined]
        for e, locality in enumerate(assignment.endpoints):
            for h, lb_endpoint in enumerate(locality.lb_endpoints):
                sock = lb_endpoint.endpoint.address.socket_address
                if not lb_endpoint.endpoint.address.HasField("socket_address"):
                    continue
                try:
                    ipaddress.ip_address(sock.address)
                except ValueError:
                    self.report("error", f"{path}.load_assignment.endpoints[{e}].lb_endpoints"
                                f"[{h}].endpoint.address.socket_address.address",
                                f"malformed IP address: {sock.address} (a STATIC cluster needs "
                                "IP addresses; use type: STRICT_DNS for host names)")


def _elements(fd, value, path: str) -> Iterator[tuple[object, str]]:
    """``(item, path)`` for a singular, repeated or map field's value."""
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        for key in value:
            yield value[key], f'{path}["{key}"]'
    elif fd.is_repeated:
        for i, item in enumerate(value):
            yield item, f"{path}[{i}]"
    else:
        yield value, path


def _normalise_ip(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address
