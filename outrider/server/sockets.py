"""Listening sockets, owned by the process that supervises the workers.

Each worker accepts on a socket of its own, bound with ``SO_REUSEPORT`` (Envoy's default on
Linux), so the kernel spreads new connections over the workers without a shared accept lock.
Closing such a socket resets the connections still queued in its backlog; so the sockets belong
to the supervising process, not to the workers: a worker that exits (drain, crash, reload)
closes only its copy, and its successor accepts the same queue. A binary upgrade hands the same
sockets to the new process (``server/hot_restart.py``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

BACKLOG = 1024


@dataclass(frozen=True)
class ListenAddress:
    address: str
    port: int
    ipv4_compat: bool = False

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def bind_listening_socket(where: ListenAddress) -> socket.socket:
    """A listening, non-blocking socket: SO_REUSEPORT, and for an IPv6 address with
    ``ipv4_compat`` a dual-stack socket that also accepts IPv4 clients."""
    family = socket.AF_INET6 if ":" in where.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if where.ipv4_compat else 1)
        sock.bind((where.address, where.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class ListenerSockets:
    """The sockets of every listener address: one per worker slot.

    Keyed by the address the config names (port 0 included, so a reload of the same config
    keeps the same sockets); ``bound`` is where they actually listen.
    """

    workers: int
    by_address: dict[ListenAddress, list[socket.socket]] = field(default_factory=dict)

    def ensure(self, where: ListenAddress) -> list[socket.socket]:
        """The sockets for ``where``, bound now if new (OSError if the address is taken)."""
        socks = self.by_address.get(where)
        if socks is not None:
            return socks
        first = bind_listening_socket(where)
        socks = [first]
        try:
            # Port 0: the first socket picks the port, the others share it.
            port = first.getsockname()[1]
            same = ListenAddress(where.address, port, where.ipv4_compat)
            socks += [bind_listening_socket(same) for _ in range(self.workers - 1)]
        except OSError:
            for sock in socks:
                sock.close()
            raise
        self.by_address[where] = socks
        return socks

    def adopt(self, where: ListenAddress, socks: list[socket.socket]) -> None:
        """Sockets inherited from the process being upgraded; a different worker count binds
        the missing ones or closes the extra ones."""
        socks = list(socks)
        while len(socks) > self.workers:
            socks.pop().close()
        if len(socks) < self.workers:
            port = socks[0].getsockname()[1]
            same = ListenAddress(where.address, port, where.ipv4_compat)
            socks += [bind_listening_socket(same) for _ in range(self.workers - len(socks))]
        self.by_address[where] = socks

    def for_worker(self, index: int) -> dict[ListenAddress, socket.socket]:
        return {where: socks[index] for where, socks in self.by_address.items()
                if socks[index].fileno() != -1}

    def close_slot(self, index: int) -> None:
        """Close worker ``index``'s sockets (it is gone for good): connections the kernel
        would queue there go to the other workers' sockets instead."""
        for socks in self.by_address.values():
            socks[index].close()

    def retain(self, wanted: set[ListenAddress]) -> None:
        """Close the sockets of addresses no listener uses any more."""
        for where in [w for w in self.by_address if w not in wanted]:
            for sock in self.by_address.pop(where):
                sock.close()

    def close(self) -> None:
        self.retain(set())
