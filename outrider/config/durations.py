"""Small readers for Envoy's well-known value types, honouring field presence.

Envoy gives "unset" and "set to zero" different meanings (route ``timeout`` unset = 15s, ``0s`` =
no timeout; ``max_requests_per_connection`` unset = unlimited). A ``Duration`` or wrapper message
cannot tell whether it was set, only its parent can (``HasField``), so every reader takes the
parent message and the field name::

    timeout = seconds(route_action, "timeout", 15.0)      # None only if the default is None
    limit = uint_value(opts, "max_requests_per_connection", None)
    panic = percent(common_lb_config, "healthy_panic_threshold", 50.0)

Each returns ``default`` when the field is unset, and the field's value otherwise.
"""

from __future__ import annotations

from google.protobuf import duration_pb2
from google.protobuf.message import Message


def duration_seconds(duration: duration_pb2.Duration) -> float:
    """A Duration as float seconds (no presence check: a default instance is 0.0)."""
    return duration.seconds + duration.nanos / 1e9


def seconds(msg: Message, field: str, default: float | None) -> float | None:
    """Seconds in ``msg.<field>`` (a google.protobuf.Duration), or ``default`` when unset."""
    if not msg.HasField(field):
        return default
    return duration_seconds(getattr(msg, field))


def uint_value(msg: Message, field: str, default: int | None) -> int | None:
    """``msg.<field>.value`` for a UInt32Value/UInt64Value/Int*Value wrapper, or ``default``."""
    if not msg.HasField(field):
        return default
    return int(getattr(msg, field).value)


uint32_value = uint_value  # the name the first design notes used


def bool_value(msg: Message, field: str, default: bool) -> bool:
    """``msg.<field>.value`` for a BoolValue wrapper, or ``default`` when unset."""
    if not msg.HasField(field):
        return default
    return bool(getattr(msg, field).value)


def double_value(msg: Message, field: str, default: float | None) -> float | None:
    """``msg.<field>.value`` for a DoubleValue wrapper, or ``default`` when unset."""
    if not msg.HasField(field):
        return default
    return float(getattr(msg, field).value)


def runtime_double(msg: Message, field: str, default: float) -> float:
    """``msg.<field>.default_value`` for an ``envoy.config.core.v3.RuntimeDouble``.

    Outrider has no runtime layers, so the runtime key never overrides: this is exactly what
    Envoy does when the key is absent from its runtime.
    """
    if not msg.HasField(field):
        return default
    return float(getattr(msg, field).default_value)


def percent(msg: Message, field: str, default: float) -> float:
    """The 0–100 value of an ``envoy.type.v3.Percent`` field (not a fraction), or ``default``."""
    if not msg.HasField(field):
        return default
    return float(getattr(msg, field).value)


_DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}  # FractionalPercent.DenominatorType


def fractional_percent(msg: Message, field: str, default: float) -> float:
    """An ``envoy.type.v3.FractionalPercent`` field as a fraction in [0, 1], or ``default``."""
    if not msg.HasField(field):
        return default
    value = getattr(msg, field)
    fraction = value.numerator / _DENOMINATORS.get(value.denominator, 100)
    return min(fraction, 1.0)


def timeout(msg: Message, field: str, default: float | None) -> float | None:
    """Like ``seconds``, for Envoy's timeouts where a set ``0s`` means disabled (None)."""
    value = seconds(msg, field, default)
    return None if value == 0 else value
