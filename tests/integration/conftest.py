"""Fixtures for integration tests: real origins and a real proxy process per module.

Every module builds its config, starts one proxy for all its tests (module scope) and stops it
at the end. ``OUTRIDER_TEST_PROXY=envoy`` runs the same tests against the real Envoy binary,
which checks that the tests expect Envoy's behaviour; tests of Outrider-only details are marked
``outrider_only`` (tests/support/marks.py) and skip then.
"""

from __future__ import annotations

import pytest

from tests.support.marks import KIND
from tests.support.origin import Origin
from tests.support.proxy import ProxyProcess, envoy_binary


def pytest_collection_modifyitems(config, items):
    if KIND == "envoy" and envoy_binary() is None:
        skip = pytest.mark.skip(reason="OUTRIDER_TEST_PROXY=envoy but no envoy binary")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="module")
def origins():
    """Three origins named a, b and c, shared by a module's tests."""
    started = {name: Origin(name).start() for name in ("a", "b", "c")}
    yield started
    for origin in started.values():
        origin.stop()


@pytest.fixture(scope="module")
def start_proxy():
    """``start_proxy(config)`` runs the proxy under test; all are stopped when the module ends."""
    running: list[ProxyProcess] = []

    def start(config: dict, extra_args: tuple = ()) -> ProxyProcess:
        proxy = ProxyProcess(config, KIND, extra_args).start()
        running.append(proxy)
        return proxy

    yield start
    # No request may crash the process: one that died on its own fails the module's teardown.
    crashed = [(p, p.proc.returncode, p.log()) for p in running
               if p.proc.poll() is not None and not getattr(p, "exit_expected", False)]
    for proxy in running:
        proxy.stop()
    if crashed:
        pytest.fail("".join(f"{p.kind} exited with {code} during the tests:\n{log[-3000:]}\n"
                            for p, code, log in crashed))
