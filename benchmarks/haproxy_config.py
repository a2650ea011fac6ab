"""The HAProxy configuration of the scale-out benchmark and test: replicas behind one frontend, balanced by least
connections, each checked on /readyz as deploy/haproxy/haproxy.cfg does."""

from __future__ import annotations

from collections.abc import Sequence

TEMPLATE = """
global
    maxconn 1024
defaults
    mode http
    timeout connect {connect_timeout_ms}ms
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    # A connection refused by a dead replica (nothing was sent) is retried on another one.
    retries 3
    option redispatch 1
frontend cameras
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {check_inter_ms}ms fall {fall} rise 2
{servers}
"""

STATS = """frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def haproxy_config(
    port: int,
    replicas: Sequence[tuple[str, str]],
    *,
    check_inter_ms: int = 1000,
    fall: int = 2,
    connect_timeout_ms: int = 2000,
    stats_port: int | None = None,
) -> str:
    """The configuration text for `replicas` ((name, "host:port") each) behind 127.0.0.1:`port`; a replica is down
    after `fall` failed checks `check_inter_ms` apart; with `stats_port`, HAProxy's stats page at /stats there."""
    servers = "\n".join(f"    server {name} {address} check" for name, address in replicas)
    config = TEMPLATE.format(
        port=port, servers=servers, check_inter_ms=check_inter_ms, fall=fall, connect_timeout_ms=connect_timeout_ms
    )
    return config + ("" if stats_port is None else STATS.format(stats_port=stats_port))
