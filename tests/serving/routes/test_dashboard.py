"""The dashboard pages and static files: served locally with the right types, no key needed, nothing external."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from inspection.settings import Settings
from serving.app import create_app
from serving.routes.dashboard import STATIC_DIR


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # No `with`: the lifespan (engines, database) is not needed to serve files, so no model must be trained.
    yield TestClient(create_app(settings))


@pytest.mark.parametrize(
    ("path", "page"), [("/", "index.html"), ("/products/widget", "index.html"), ("/review", "review.html")]
)
def test_pages_are_html_without_a_key(client: TestClient, path: str, page: str) -> None:
    response = client.get(path, params={"product": "widget"} if path == "/review" else None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (STATIC_DIR / page).read_text()
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy


def test_product_page_rejects_bad_names(client: TestClient) -> None:
    response = client.get("/products/Not%20A%20Product")
    assert response.status_code == 400 and "invalid product name" in response.json()["detail"]


@pytest.mark.parametrize(
    ("name", "media"),
    [
        ("style.css", "text/css"),
        ("common.js", "text/javascript"),
        ("dashboard.js", "text/javascript"),
        ("review.js", "text/javascript"),
        ("vendor/chart.umd.min.js", "text/javascript"),
    ],
)
def test_static_files_have_their_types(client: TestClient, name: str, media: str) -> None:
    response = client.get(f"/static/dashboard/{name}")
    assert response.status_code == 200
    # Module scripts are refused by browsers unless served with a JavaScript type.
    assert response.headers["content-type"].split(";")[0] in {media, "application/javascript"}
    assert response.headers["cache-control"] == "no-cache"


def test_chart_js_is_vendored_with_its_license(client: TestClient) -> None:
    chart = client.get("/static/dashboard/vendor/chart.umd.min.js")
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]
    assert "MIT License" in client.get("/static/dashboard/vendor/chart.js.LICENSE.md").text


def test_pages_reference_only_local_files(client: TestClient) -> None:
    for path in ("/", "/review"):
        html = client.get(path).text
        references = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert references, path
        for ref in references:
            assert ref.startswith(("/", "data:", "#")) and not ref.startswith("//"), ref
            if ref.startswith("/static/"):
                assert client.get(ref).status_code == 200, ref
    for name in ("common.js", "dashboard.js", "review.js", "style.css"):
        assert not re.search(r"https?://", (STATIC_DIR / name).read_text()), name


def test_static_files_stay_inside_the_package(client: TestClient) -> None:
    assert client.get("/static/dashboard/../routes/dashboard.py").status_code == 404
    assert client.get("/static/dashboard/missing.js").status_code == 404
