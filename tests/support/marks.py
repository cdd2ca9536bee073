"""Which proxy the integration tests drive, and a mark for tests of Outrider-only behaviour."""

from __future__ import annotations

import pytest

from tests.support.proxy import integration_proxy_kind

KIND = integration_proxy_kind()
SERVER_NAME = "outrider" if KIND == "outrider" else "envoy"  # the default `server` header

outrider_only = pytest.mark.skipif(KIND != "outrider", reason="Outrider-specific behaviour")
