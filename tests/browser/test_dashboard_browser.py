"""The dashboard in a real browser (Debian's Chromium through Playwright) against a live server with real frames.

Set DASHBOARD_SCREENSHOT=path to also save a full-page screenshot of the dashboard with data (1400 px wide).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Playwright cannot download its own browser on these machines (nor in CI): it drives the system Chromium.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
CHARTS = ("pchart", "pareto", "lines", "throughput")
# Chart.getChart() per canvas: labels and data of every dataset, so the test compares what is drawn with the API.
READ_CHARTS = """ids => Object.fromEntries(ids.map(id => {
  const chart = Chart.getChart(document.getElementById('chart-' + id));
  return [id, chart && {labels: chart.data.labels,
                        datasets: Object.fromEntries(chart.data.datasets.map(d => [d.label, d.data]))}];
}))"""
# Painted pixels of a canvas (the background is transparent): an empty or blank chart has next to none.
PAINTED_PIXELS = """id => {
  const canvas = document.getElementById('chart-' + id);
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  return painted;
}"""


def _chromium() -> str:
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "Chromium is required for the dashboard browser tests and was not found "
            "(looked for `chromium` / `chromium-browser` on PATH and $CHROMIUM_PATH); install it, "
            "e.g. `apt-get install chromium`",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium; missing Chromium or Playwright fails the test (CI installs both), it never skips."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'", pytrace=False)
    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def posted(live_server: Any, synthetic_source: Path) -> dict[str, str]:
    """30 real frames through /v1/inspect (two lines), two thirds QA-labelled with the truth; id -> true label."""
    good = [("good", path) for path in sorted((synthetic_source / "good").glob("*.png"))[:14]]
    defect_dirs = sorted(d for d in synthetic_source.iterdir() if d.is_dir() and d.name not in {"good", "masks"})
    defects = [(d.name, path) for d in defect_dirs for path in sorted(d.glob("*.png"))[:4]]
    frames = good + defects
    random.Random(3).shuffle(frames)
    truth: dict[str, str] = {}
    with live_server.client("camera") as camera:
        for i, (label, path) in enumerate(frames):
            answer = camera.post(
                f"/v1/inspect/{live_server.product}",
                content=path.read_bytes(),
                headers={"Content-Type": "image/png"},
                params={"line_id": ("line-a", "line-b")[i % 2], "camera_id": f"cam-{i % 3}"},
            )
            assert answer.status_code == 200, answer.text
            truth[answer.json()["inspection_id"]] = label
    with live_server.client("qa") as qa:
        for i, (inspection_id, label) in enumerate(truth.items()):
            if i % 3:  # every third frame stays unreviewed for the review page
                response = qa.post(f"/v1/inspections/{inspection_id}/feedback", json={"label": label})
                assert response.status_code == 200, response.text
    return truth


def _sign_in(page: Any, key: str) -> None:
    page.get_by_test_id("key-input").fill(key)
    page.get_by_test_id("key-submit").click()


def _wait_for_refresh(page: Any) -> None:
    page.wait_for_function("() => document.getElementById('last-updated').dataset.updatedAt", timeout=15_000)


def _figure(page: Any, testid: str) -> dict[str, str]:
    locator = page.locator(f"#strip-body [data-testid={testid}], #trust-body [data-testid={testid}]").first
    return {
        "n": locator.get_attribute("data-n") or "",
        "k": locator.get_attribute("data-k") or "",
        "value": locator.locator(".figure-value").inner_text(),
    }


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.1f} %"


def _check_dashboard(page: Any, stats: dict[str, Any], throughput: dict[str, Any]) -> None:
    charts = page.evaluate(READ_CHARTS, list(CHARTS))
    totals, buckets = stats["totals"], stats["buckets"]
    pchart = charts["pchart"]["datasets"]
    assert pchart["defect rate"] == pytest.approx([b["defect_rate"] for b in buckets])
    assert pchart["UCL"] == pytest.approx([b["control"]["ucl"] for b in buckets])
    assert pchart["LCL"] == pytest.approx([b["control"]["lcl"] for b in buckets])
    assert pchart["center"] == pytest.approx([b["control"]["center"] for b in buckets])
    assert charts["pareto"]["labels"] == list(totals["per_type"])
    assert charts["pareto"]["datasets"]["defects"] == list(totals["per_type"].values())
    assert charts["pareto"]["datasets"]["cumulative %"][-1] == pytest.approx(100)
    assert charts["lines"]["datasets"]["defect rate"] == pytest.approx(
        [b["defect_rate"] for b in stats["by_line"].values()]
    )
    assert [label.split(" (n=")[0] for label in charts["lines"]["labels"]] == list(stats["by_line"])
    # The 60-minute window slides between the page's fetch and ours: compare the busy minutes, not positions.
    busy = sorted(fps for fps in charts["throughput"]["datasets"]["frames/s"] if fps)
    assert len(charts["throughput"]["datasets"]["frames/s"]) == len(throughput["per_minute"])
    assert busy == pytest.approx(sorted(m["fps"] for m in throughput["per_minute"] if m["fps"]))
    assert page.get_by_test_id("frames-window").locator(".figure-value").inner_text() == str(throughput["n"])
    for chart in CHARTS:
        assert page.evaluate(PAINTED_PIXELS, chart) > 2000, f"the {chart} chart is blank"
    miss = _figure(page, "qa-miss-rate")
    assert miss["n"] == str(totals["qa"]["miss_rate"]["n"]) and miss["value"] == _pct(totals["qa"]["miss_rate"]["rate"])
    headline = page.get_by_test_id("audit-miss-rate")
    assert headline.locator(".figure-value").inner_text() == _pct(totals["audit"]["miss_rate"]["estimate"])


class Browsing:
    """Pages in fresh browser contexts (their own localStorage) that record requests and script errors."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.contexts: list[Any] = []

    def new_page(self) -> Any:
        context = self.browser.new_context(viewport=VIEWPORT)
        self.contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda m: self.errors.append(m.text) if "Content Security Policy" in m.text else None)
        return page

    def assert_clean(self) -> None:
        """No script errors, no CSP violations, and nothing requested from anywhere but the server."""
        assert not self.errors, self.errors
        hosts = {urlparse(url).hostname for url in self.requests if not url.startswith(("blob:", "data:"))}
        assert hosts == {"127.0.0.1"}, f"the pages reached outside the server: {hosts - {'127.0.0.1'}}"


@pytest.fixture
def browsing(browser: Any) -> Iterator[Browsing]:
    browsing = Browsing(browser)
    yield browsing
    for context in browsing.contexts:
        context.close()


def test_dashboard_charts_show_the_stats(live_server: Any, posted: dict[str, str], browsing: Browsing) -> None:
    product, base = live_server.product, live_server.url
    page = browsing.new_page()
    page.goto(f"{base}/products/{product}")
    assert page.get_by_test_id("key-form").is_visible()
    _sign_in(page, live_server.keys["qa"])
    _wait_for_refresh(page)
    with live_server.client("manager") as manager:
        stats = manager.get("/v1/stats", params={"product": product, "bucket": "hour"}).json()
        throughput = manager.get("/v1/stats/throughput", params={"product": product, "minutes": 60}).json()
        everything = manager.get("/v1/stats", params={"bucket": "hour"}).json()
        served = {p["product"]: p["served_version"] for p in manager.get("/v1/products").json()}
    assert stats["totals"]["n"] >= len(posted)
    _check_dashboard(page, stats, throughput)
    assert page.get_by_test_id("served-version").first.inner_text() == str(served[product])
    # The challenger-in-shadow card of the product page says what the API says.
    with live_server.client("qa") as qa:
        shadow = qa.get(f"/v1/products/{product}/shadow").json()
    if shadow["challenger"] is None:
        assert page.get_by_test_id("shadow-message").inner_text() == "no challenger in shadow"
    else:
        assert page.get_by_test_id("shadow-agreement").get_attribute("data-n") == str(shadow["frames_shadowed"])
    if screenshot := os.environ.get("DASHBOARD_SCREENSHOT"):
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, full_page=True)

    # All products: the key is remembered, so no form.
    page.goto(f"{base}/")
    _wait_for_refresh(page)
    assert not page.get_by_test_id("key-form").is_visible()
    charts = page.evaluate(READ_CHARTS, ["pareto"])
    assert charts["pareto"]["datasets"]["defects"] == list(everything["totals"]["per_type"].values())
    assert not page.get_by_test_id("panel-shadow").is_visible()  # a challenger belongs to one product's page
    browsing.assert_clean()


def test_relabel_on_the_review_page_moves_the_live_figure(
    live_server: Any, posted: dict[str, str], browsing: Browsing
) -> None:
    product = live_server.product
    page = browsing.new_page()
    page.goto(f"{live_server.url}/review?product={product}")
    _sign_in(page, live_server.keys["qa"])
    page.wait_for_selector("#cards [data-testid=review-card]", timeout=15_000)
    page.wait_for_selector("#strip-body [data-testid=qa-miss-rate]")
    cards = page.locator("#cards [data-testid=review-card]")
    ids = [cards.nth(i).get_attribute("data-inspection-id") for i in range(cards.count())]
    ours = [i for i in ids if i in posted]
    assert ours, "none of the unreviewed frames is in the review queue"
    # Prefer a frame the model got wrong (it moves k as well as n), as QA would find it.
    verdicts = {i: page.locator(f"#cards [data-inspection-id='{i}']").get_attribute("data-verdict") for i in ours}
    wrong = [i for i in ours if (posted[i] == "good") == (verdicts[i] == "defect")]
    chosen = (wrong or ours)[0]
    card = page.locator(f"#cards [data-inspection-id='{chosen}']")
    assert card.locator("img[data-testid=card-frame]").get_attribute("src", timeout=10_000).startswith("blob:")
    label = posted[chosen]
    testid = "qa-false-detection-rate" if label == "good" else "qa-miss-rate"
    before = _figure(page, testid)
    if chosen in wrong:
        card.get_by_test_id("correct-select").select_option(label)
        card.get_by_test_id("correct-save").click()
    else:
        card.get_by_test_id("confirm").click()
    page.wait_for_function(
        "([id, label]) => document.querySelector(`[data-inspection-id='${id}']`).dataset.feedbackLabel === label",
        arg=[chosen, label],
    )
    page.wait_for_function(
        "([testid, n]) => document.querySelector(`#strip-body [data-testid=${testid}]`).dataset.n === n",
        arg=[testid, str(int(before["n"]) + 1)],
    )
    with live_server.client("manager") as manager:
        qa = manager.get("/v1/stats", params={"product": product}).json()["totals"]["qa"]
    rate = qa[testid.removeprefix("qa-").replace("-", "_")]
    after = _figure(page, testid)
    assert after == {"n": str(rate["n"]), "k": str(rate["k"]), "value": _pct(rate["rate"])}
    assert after != before
    assert card.get_by_test_id("feedback-label").inner_text() == f"QA label: {label}"
    browsing.assert_clean()


@pytest.fixture
def every_pass_audited(live_server: Any) -> Iterator[None]:
    """The session product audits every pass while the test runs, then goes back to the rates it had."""
    path = f"/v1/products/{live_server.product}/audit"
    with live_server.client("qa") as qa:
        before = qa.get(path).json()["in_force"]
        changed = qa.put(path, json={"pass_rate": 1.0, "defect_rate": 1.0, "reason": "browser test: audit every frame"})
        assert changed.status_code == 200, changed.text
        yield
        restore = {
            "pass_rate": before["pass_rate"],
            "defect_rate": before["defect_rate"],
            "reason": "browser test done",
        }
        assert qa.put(path, json=restore).status_code == 200


def _estimate(page: Any, testid: str) -> dict[str, float | None]:
    figure = page.locator(f"#trust-body [data-testid={testid}], #strip-body [data-testid={testid}]").first
    values = {name: figure.get_attribute(f"data-{name}") for name in ("estimate", "low", "high")}
    return {name: float(value) if value else None for name, value in values.items()}


def test_audit_estimates_on_the_dashboard_and_the_audit_queue_on_the_review_page(
    live_server: Any, posted: dict[str, str], synthetic_source: Path, every_pass_audited: None, browsing: Browsing
) -> None:
    product = live_server.product
    good = sorted((synthetic_source / "good").glob("*.png"))[14:22]
    posted_from = datetime.now(UTC).isoformat()
    with live_server.client("camera") as camera:
        answers = [
            camera.post(
                f"/v1/inspect/{product}", content=path.read_bytes(), headers={"Content-Type": "image/png"}
            ).json()
            for path in good
        ]
    assert all(answer["audit"] for answer in answers)  # every frame is drawn at rate 1
    with live_server.client("qa") as qa:
        for answer in answers[:5]:  # the last three stay in the queue: a backlog the page must show
            assert (
                qa.post(f"/v1/inspections/{answer['inspection_id']}/feedback", json={"label": "good"}).status_code
                == 200
            )
        stats = qa.get("/v1/stats", params={"product": product, "bucket": "hour"}).json()
        queue = qa.get("/v1/inspections", params={"product": product, "audit": "true", "limit": 24}).json()
        look = qa.get(
            "/v1/inspections", params={"product": product, "review": "true", "has_feedback": "false", "limit": 24}
        ).json()
    audit = stats["totals"]["audit"]
    assert audit["miss_rate"]["estimate"] is not None and audit["warning"]

    # The dashboard: the audited estimates are the headline, with intervals, the audit's size and its warning; the
    # QA-labelled counts sit below under their own name; the trend plots each bucket's estimate and band.
    page = browsing.new_page()
    page.goto(f"{live_server.url}/products/{product}")
    _sign_in(page, live_server.keys["manager"])
    _wait_for_refresh(page)
    for testid, key in (
        ("audit-miss-rate", "miss_rate"),
        ("audit-false-detection-rate", "false_detection_rate"),
        ("audit-escapes-ppm", "escaped_defects_ppm"),
    ):
        rate = audit[key]
        shown = _estimate(page, testid)
        assert shown["estimate"] == pytest.approx(rate["estimate"]), testid
        assert [shown["low"], shown["high"]] == pytest.approx(rate["ci95"]), testid
    miss = page.get_by_test_id("audit-miss-rate").inner_text()
    assert _pct(audit["miss_rate"]["estimate"]) in miss and f"95 % CI {_pct(audit['miss_rate']['ci95'][0])}" in miss
    size = page.get_by_test_id("audit-size")
    assert (size.get_attribute("data-n-audited"), size.get_attribute("data-backlog")) == (
        str(audit["n_audited"]),
        str(audit["backlog"]),
    )
    assert f"{audit['n_audited']} of {audit['n_selected']} drawn frames labelled" in size.inner_text()
    assert page.get_by_test_id("audit-warning").inner_text() == f"⚠ {audit['warning']}"
    assert page.get_by_test_id("qa-scope").inner_text().startswith("Of the frames QA labelled")
    qa_miss = page.locator("#trust-body [data-testid=qa-miss-rate]")
    assert qa_miss.get_attribute("data-n") == str(stats["totals"]["qa"]["miss_rate"]["n"])
    trend = page.evaluate(READ_CHARTS, ["trend"])["trend"]["datasets"]
    buckets = [b["audit"] for b in stats["buckets"]]
    assert trend["miss rate"] == pytest.approx([b["miss_rate"]["estimate"] for b in buckets])
    assert trend["false-detection rate 95 % high"] == pytest.approx(
        [b["false_detection_rate"]["ci95"][1] for b in buckets]
    )
    assert page.evaluate(PAINTED_PIXELS, "trend") > 2000, "the trend chart is blank"
    if screenshot := os.environ.get("DASHBOARD_SCREENSHOT"):
        page.get_by_test_id("panel-trust").screenshot(path=str(Path(screenshot).with_suffix(".audit.png")))

    # The review page: the audit queue, oldest first with its backlog and share done, apart from worth-a-look.
    page = browsing.new_page()
    page.goto(f"{live_server.url}/review?product={product}")
    _sign_in(page, live_server.keys["qa"])
    page.wait_for_function("() => document.getElementById('audit-cards').dataset.loadedAt")
    page.wait_for_function("() => document.getElementById('cards').dataset.loadedAt")
    listed = lambda box: page.evaluate(  # noqa: E731
        "box => [...document.querySelectorAll(`#${box} [data-testid=review-card]`)].map(c => c.dataset.inspectionId)",
        box,
    )
    assert listed("audit-cards") == [item["id"] for item in queue["items"]]
    received = [item["received_at"] for item in queue["items"]]
    assert received == sorted(received)  # oldest first
    # The three left unlabelled wait in the queue (behind older picks of the session's other tests, oldest first).
    with live_server.client("qa") as qa:
        whole = qa.get(
            "/v1/inspections", params={"product": product, "audit": "true", "since": posted_from, "limit": 500}
        ).json()
    assert {a["inspection_id"] for a in answers[5:]} <= {item["id"] for item in whole["items"]}
    assert listed("cards") == [item["id"] for item in look["items"]]
    progress = page.get_by_test_id("audit-progress")
    assert progress.get_attribute("data-backlog") == str(queue["audit"]["backlog"])
    assert page.get_by_test_id("audit-backlog").inner_text() == f"backlog {queue['audit']['backlog']}"
    assert f"{queue['audit']['n_audited']} of {queue['audit']['n_selected']} drawn frames labelled" in (
        page.get_by_test_id("audit-share-done").inner_text()
    )
    if screenshot := os.environ.get("DASHBOARD_SCREENSHOT"):
        page.screenshot(path=str(Path(screenshot).with_suffix(".review.png")), full_page=True)

    # Labelling the oldest audited frame takes it off the backlog and into the estimates.
    first = page.locator("#audit-cards [data-testid=review-card]").first
    first_id = first.get_attribute("data-inspection-id")
    first.get_by_test_id("correct-select").select_option(posted.get(first_id or "", "good"))
    first.get_by_test_id("correct-save").click()
    page.wait_for_function(
        "n => document.getElementById('audit-progress').dataset.backlog === n", arg=str(queue["audit"]["backlog"] - 1)
    )
    browsing.assert_clean()


def test_roles_and_bad_keys(live_server: Any, posted: dict[str, str], browsing: Browsing) -> None:
    # A manager sees the review page read-only: no relabel controls (and the list may be closed to the role).
    page = browsing.new_page()
    page.goto(f"{live_server.url}/review?product={live_server.product}")
    _sign_in(page, live_server.keys["manager"])
    page.wait_for_selector("#strip-body [data-testid=qa-miss-rate]")
    page.wait_for_function(
        "() => document.getElementById('cards').dataset.loadedAt || "
        "!document.querySelector('#panel-cards .panel-message').hidden"
    )
    assert page.locator("[data-action]").count() == 0
    message = page.locator("#panel-cards .panel-message")
    if message.is_visible():
        assert "your role (manager) may not see this" in message.inner_text()

    # A bad key brings the form back with "invalid key"; a camera key gets a plain "no dashboard".
    page = browsing.new_page()
    page.goto(f"{live_server.url}/")
    _sign_in(page, "not-a-key")
    page.get_by_test_id("key-message").filter(has_text="invalid key").wait_for()
    assert page.get_by_test_id("key-form").is_visible() and not page.locator("#content").is_visible()
    assert page.evaluate("() => localStorage.getItem('inspection.apiKey')") is None
    _sign_in(page, live_server.keys["camera"])
    page.get_by_test_id("page-message").filter(has_text="cameras").wait_for()
    assert not page.locator("#content").is_visible()
    browsing.assert_clean()


def test_challenger_in_shadow_card(
    trained_product: Any, synthetic_source: Path, tmp_path: Path, browsing: Browsing
) -> None:
    from tests.conftest import serve_on_loopback
    from tests.serving.test_server_promotion import _home_with_two_exported_versions
    from tests.serving.test_shadow_scorer import _frames, _post_all, _wait_for

    settings = _home_with_two_exported_versions(trained_product, tmp_path)  # v2 registered as challenger
    product = trained_product.product
    frames = _frames(synthetic_source)[::2]
    with serve_on_loopback(settings, product, "shadow") as live:
        ids = [answer["inspection_id"] for answer in _post_all(live, frames, "line-shadow")]
        with live.client("qa") as qa:
            for (label, _), inspection_id in zip(frames, ids, strict=True):
                assert qa.post(f"/v1/inspections/{inspection_id}/feedback", json={"label": label}).status_code == 200
            shadow = _wait_for(
                lambda: (s := qa.get(f"/v1/products/{product}/shadow").json())["frames_shadowed"] == len(ids) and s
            )
        page = browsing.new_page()
        page.goto(f"{live.url}/products/{product}")
        _sign_in(page, live.keys["manager"])
        _wait_for_refresh(page)
        assert page.get_by_test_id("shadow-versions").get_attribute("data-challenger") == "2"
        agreement = page.get_by_test_id("shadow-agreement")
        assert agreement.get_attribute("data-n") == str(len(ids))
        assert agreement.get_attribute("data-k") == str(shadow["agreement"]["k"])
        for model in ("champion", "challenger"):
            for rate in ("miss-rate", "false-detection-rate"):
                figure = page.get_by_test_id(f"shadow-{model}-{rate}")
                expected = shadow["qa"][model][rate.replace("-", "_")]
                assert (figure.get_attribute("data-k"), figure.get_attribute("data-n")) == (
                    str(expected["k"]),
                    str(expected["n"]),
                )
                assert figure.locator(".figure-value").inner_text() == _pct(expected["rate"])
        if screenshot := os.environ.get("DASHBOARD_SCREENSHOT"):
            page.get_by_test_id("panel-shadow").screenshot(path=str(Path(screenshot).with_suffix(".shadow.png")))
    browsing.assert_clean()


# The operating-point chart's datasets as drawn: label -> [{x, y, threshold}].
READ_OPERATING = """() => Object.fromEntries(Chart.getChart(document.getElementById('chart-operating')).data.datasets
  .map(d => [d.label, d.data.map(p => ({x: p.x, y: p.y, threshold: p.threshold}))]))"""


def test_operating_point_panel_draws_the_test_curve_and_what_moving_costs(live_server: Any, browsing: Browsing) -> None:
    product = live_server.product
    with live_server.client("manager") as manager:
        curve = manager.get(f"/v1/products/{product}/operating-curve").json()
    page = browsing.new_page()
    page.goto(f"{live_server.url}/products/{product}")
    _sign_in(page, live_server.keys["manager"])
    _wait_for_refresh(page)
    page.wait_for_selector("[data-testid=cost-row]")
    drawn = page.evaluate(READ_OPERATING)
    point = lambda p: {"x": p["false_detection_rate"], "y": p["miss_rate"], "threshold": p["threshold"]}  # noqa: E731
    assert drawn["test curve"] == [point(p) for p in curve["curve"]]
    assert drawn["served threshold"] == [point(curve["current"]["test"])]
    assert page.evaluate(PAINTED_PIXELS, "operating") > 2000, "the operating-point chart is blank"
    served = page.get_by_test_id("operating-threshold")
    assert float(served.get_attribute("data-threshold") or "nan") == curve["threshold"]
    assert "as calibrated in training" in served.inner_text()
    rows = page.get_by_test_id("cost-row")
    assert rows.count() == len(curve["costs"]) == 4
    for i, cost in enumerate(curve["costs"]):
        row = rows.nth(i)
        assert float(row.get_attribute("data-target") or "nan") == cost["target_miss_rate"]
        if "refused" in cost:
            assert f"needs ≥ {cost['needs_defects']} defective validation parts" in row.inner_text()
        else:
            assert float(row.get_attribute("data-threshold") or "nan") == cost["threshold"]
            assert _pct(cost["test"]["false_detection_rate"]) in row.inner_text()
    if screenshot := os.environ.get("DASHBOARD_SCREENSHOT"):
        page.get_by_test_id("panel-operating").screenshot(path=str(Path(screenshot).with_suffix(".operating.png")))
    page.goto(f"{live_server.url}/")  # all products: a curve belongs to one product's page
    _wait_for_refresh(page)
    assert not page.get_by_test_id("panel-operating").is_visible()
    browsing.assert_clean()
