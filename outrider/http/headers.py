"""Header maps: the one representation of HTTP headers inside the proxy.

Names are lowercase ``str`` and values ``str`` (latin-1 decoded, so every byte round-trips).
Order and repeated names are kept, as HTTP/1 requires. Request pseudo-headers (``:method``,
``:path``, ``:authority``, ``:scheme``) and the response ``:status`` are attributes, readable
through ``get(":path")`` so that route matchers treat them like any other header, as Envoy does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class HeaderMap:
    """An ordered multi-map of lowercase header names to values."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (lowercase), or None."""
        for key, value in self._items:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._items if key == name]

    def add(self, name: str, value: str) -> None:
        """Append a value, keeping any others of the same name."""
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one (in the first one's place)."""
        items = self._items
        for i, (key, _) in enumerate(items):
            if key == name:
                items[i] = (name, value)
                for j in range(i + 1, len(items)):
                    if items[j][0] == name:  # rare: a repeated header; drop the later copies
                        self._items = items[: i + 1] + [kv for kv in items[i + 1 :]
                                                        if kv[0] != name]
                        break
                return
        items.append((name, value))

    def set_default(self, name: str, value: str) -> None:
        """Add ``name`` only when it is absent."""
        if self.get(name) is None:
            self._items.append((name, value))

    def remove(self, name: str) -> bool:
        """Remove every value of ``name``; True if there was one."""
        before = len(self._items)
        self._items = [kv for kv in self._items if kv[0] != name]
        return len(self._items) != before

    def remove_if(self, predicate) -> None:
        """Remove every header whose name satisfies ``predicate``."""
        self._items = [kv for kv in self._items if not predicate(kv[0])]

    def items(self) -> list[tuple[str, str]]:
        return self._items

    def __contains__(self, name: object) -> bool:
        for key, _ in self._items:  # noqa: SIM110 - a plain loop beats any() on the hot path
            if key == name:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class RequestHeaders(HeaderMap):
    """Request headers with the HTTP/2-style pseudo-headers as attributes."""

    __slots__ = ("method", "path", "authority", "scheme")

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        authority: str = "",
        scheme: str = "http",
        items: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._items = list(items)  # HeaderMap.__init__, inline: two maps per request
        self.method = method
        self.path = path
        self.authority = authority
        self.scheme = scheme

    def get(self, name: str) -> str | None:
        if name[0] == ":":
            if name == ":path":
                return self.path
            if name == ":authority" or name == "host":
                return self.authority
            if name == ":method":
                return self.method
            if name == ":scheme":
                return self.scheme
            return None
        if name == "host":
            return self.authority
        return super().get(name)


class ResponseHeaders(HeaderMap):
    """Response headers with ``:status`` as an int attribute."""

    __slots__ = ("status", "reason")

    def __init__(self, status: int = 200, items: Iterable[tuple[str, str]] = (),
                 reason: str = "") -> None:
        self._items = list(items)  # HeaderMap.__init__, inline
        self.status = status
        self.reason = reason

    def get(self, name: str) -> str | None:
        if name == ":status":
            return str(self.status)
        return super().get(name)
