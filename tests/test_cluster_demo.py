"""`make cluster`'s HAProxy configuration: deploy/haproxy.cfg with the run's
ports, sticky by cookie."""

from __future__ import annotations

import pytest

from hub.cluster_demo import haproxy_config


@pytest.mark.unit
def test_haproxy_config_lists_this_runs_hubs_and_sticks_by_cookie() -> None:
    text = haproxy_config(9000, [9101, 9102])
    assert "bind 127.0.0.1:9000" in text
    assert "bind 127.0.0.1:8080" not in text
    servers = [line.strip() for line in text.splitlines() if line.strip().startswith("server ")]
    assert servers == [
        "server hub-9101 127.0.0.1:9101 cookie hub-9101",
        "server hub-9102 127.0.0.1:9102 cookie hub-9102",
    ]
    assert "cookie SERVERID insert indirect nocache" in text
    assert "option httpchk GET /readyz" in text
