"""Who may call what, as DESIGN.md states it: the role x route table, checked over real HTTP.

Allowed means the key's role passes (whatever the route then answers); refused means 403. Cameras post frames and
nothing else; QA sees frames, labels and promotes; managers read the aggregates."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import LiveServer
from tests.serving.test_server import _frame

pytestmark = pytest.mark.slow

ID = str(uuid.uuid4())
# (method, path, json body) -> roles allowed; "{p}" is the served product.
TABLE: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/inspect/{p}"): {"camera"},
    ("GET", "/v1/inspections"): {"qa"},
    ("POST", f"/v1/inspections/{ID}/feedback"): {"qa"},
    ("GET", f"/v1/inspections/{ID}/image"): {"qa"},
    ("GET", f"/v1/inspections/{ID}/heatmap"): {"qa"},
    ("POST", "/v1/products/{p}/models/999/promote"): {"qa"},
    ("GET", "/v1/products"): {"qa", "manager"},
    ("GET", "/v1/products/{p}/models"): {"qa", "manager"},
    ("GET", "/v1/products/{p}/operating-curve"): {"qa", "manager"},
    ("GET", "/v1/products/{p}/shadow"): {"qa", "manager"},
    ("GET", "/v1/products/{p}/audit"): {"qa", "manager"},
    ("PUT", "/v1/products/{p}/audit"): {"qa"},  # sent without a body: checked for its role, changes nothing
    ("GET", "/v1/stats"): {"qa", "manager"},
    ("GET", "/v1/stats/throughput"): {"qa", "manager"},
    ("GET", "/v1/me"): {"camera", "qa", "manager"},
}


@pytest.mark.parametrize(("method", "path"), list(TABLE))
@pytest.mark.parametrize("role", ["camera", "qa", "manager"])
def test_role_route_table(live_server: LiveServer, role: str, method: str, path: str) -> None:
    url = path.replace("{p}", live_server.product)
    with live_server.client(role) as client:
        if method == "POST" and url.startswith("/v1/inspect/"):
            answer = client.post(url, content=_frame(), headers={"Content-Type": "image/png"})
        elif url.endswith("/feedback"):
            answer = client.post(url, json={"label": "good"})
        else:
            answer = client.request(method, url)
    allowed = role in TABLE[(method, path)]
    assert (answer.status_code != 403) == allowed, (role, method, path, answer.status_code, answer.text)
    assert answer.status_code < 500
    with live_server.client(None) as anonymous:
        assert anonymous.request(method, url).status_code == 401


def test_every_v1_route_is_in_the_table(live_server: LiveServer) -> None:
    with live_server.client(None) as anonymous:
        paths = anonymous.get("/openapi.json").json()["paths"]
    documented = {(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1/") for m in ops}
    tabled = {
        (m, p.replace("{p}", "{product}").replace(ID, "{inspection_id}").replace("999", "{version}")) for m, p in TABLE
    }
    assert documented == tabled
