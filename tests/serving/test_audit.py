"""The audit sample on a real server: QA sets the rates, the server draws at answer time, the audit queue, and
estimates that labels outside the audit cannot move. Each test serves the session's trained product from a
database of its own, so the rates it sets reach no other test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from inspection.settings import Settings
from inspection.storage.database import open_database
from inspection.storage.schema import AuditPolicyRecord
from tests.conftest import LiveServer, serve_on_loopback

pytestmark = pytest.mark.slow


@pytest.fixture
def audit_server(live_server, tmp_path: Path) -> Iterator[LiveServer]:
    settings = live_server.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'audit.db'}"})
    with serve_on_loopback(settings, live_server.product, "audit") as server:
        yield server


def _labelled_frames(settings: Settings, product: str) -> list[tuple[bytes, str]]:
    """The product's images with their true labels, good and defect types interleaved."""
    root = settings.dataset_dir(product)
    folders = [f for f in sorted(root.iterdir()) if f.is_dir() and f.name != "masks"]
    groups = [[(path.read_bytes(), folder.name) for path in sorted(folder.iterdir())] for folder in folders]
    return [frame for group in itertools.zip_longest(*groups) for frame in group if frame is not None]


def _set_rates(server: LiveServer, **body: object) -> httpx.Response:
    with server.client("qa") as qa:
        return qa.put(f"/v1/products/{server.product}/audit", json=body)


def _post(server: LiveServer, frames: list[tuple[bytes, str]], line: str) -> list[tuple[dict, str]]:
    answers = []
    with server.client("camera") as camera:
        for index, (data, label) in enumerate(frames):
            response = camera.post(
                f"/v1/inspect/{server.product}",
                content=data,
                headers={"Content-Type": "image/png"},
                params={"line_id": line, "frame_id": f"{line}-{index}"},
            )
            assert response.status_code == 200, response.text
            answers.append((response.json(), label))
    return answers


def _label(server: LiveServer, answers: list[tuple[dict, str]]) -> None:
    with server.client("qa") as qa:
        for answer, label in answers:
            response = qa.post(f"/v1/inspections/{answer['inspection_id']}/feedback", json={"label": label})
            assert response.status_code == 200, response.text


def _stats(server: LiveServer, line: str) -> dict:
    with server.client("manager") as manager:
        response = manager.get("/v1/stats", params={"product": server.product, "line": line})
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def test_qa_sets_the_rates_and_the_server_draws_at_them(audit_server: LiveServer) -> None:
    frames = _labelled_frames(audit_server.settings, audit_server.product)[:6]
    assert _set_rates(audit_server, pass_rate=1.0, defect_rate=1.0, reason="audit everything").status_code == 200
    everything = _post(audit_server, frames, "line-all")
    assert all(answer["audit"] is True for answer, _ in everything)
    assert _set_rates(audit_server, pass_rate=0.0, defect_rate=0.0, reason="audit nothing").status_code == 200
    nothing = _post(audit_server, frames, "line-none")
    assert all(answer["audit"] is False for answer, _ in nothing)
    with audit_server.client("qa") as qa:
        listed = qa.get("/v1/inspections", params={"line_id": "line-all", "limit": 50}).json()["items"]
        shown = qa.get(f"/v1/products/{audit_server.product}/audit").json()
    assert {(item["audit_selected"], item["audit_probability"]) for item in listed} == {(True, 1.0)}
    assert all(item["image_url"] for item in listed), "an audited frame is archived so QA can label it"
    assert shown["in_force"]["pass_rate"] == 0.0 and shown["in_force"]["source"] == "set by QA"
    assert [entry["reason"] for entry in shown["history"]] == ["audit nothing", "audit everything"]
    assert shown["history"][0]["set_by"] == "audit qa"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"pass_rate": 1.5, "reason": "x"}, 422, "pass_rate"),
        ({"defect_rate": -0.1, "reason": "x"}, 422, "defect_rate"),
        ({"pass_bands": [{"lo": 0, "hi": 0.5, "rate": 0.1}], "reason": "x"}, 400, "cover [0, 1]"),
        (
            {"pass_bands": [{"lo": 0, "hi": 0.4, "rate": 0.1}, {"lo": 0.5, "hi": 1, "rate": 0.2}], "reason": "x"},
            400,
            "contiguous",
        ),
        ({"pass_rate": 0.1, "reason": "  "}, 422, "reason"),
        ({"pass_rate": 0.1}, 422, "reason"),
    ],
)
def test_impossible_rates_are_refused_and_nothing_is_recorded(audit_server, body, status, fragment) -> None:
    response = _set_rates(audit_server, **body)
    assert response.status_code == status and fragment in response.text, response.text
    sessions = open_database(audit_server.settings.resolved_database_url)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditPolicyRecord)) == 0


def test_only_qa_sets_rates_and_only_for_a_known_product(audit_server: LiveServer) -> None:
    for role in ("camera", "manager"):
        with audit_server.client(role) as client:
            answer = client.put(f"/v1/products/{audit_server.product}/audit", json={"pass_rate": 0.1, "reason": "x"})
        assert answer.status_code == 403, role
    with audit_server.client("qa") as qa:
        assert qa.put("/v1/products/no-such-product/audit", json={"pass_rate": 0.1, "reason": "x"}).status_code == 404


def test_labels_outside_the_audit_move_the_qa_block_and_not_the_estimates(audit_server: LiveServer) -> None:
    frames = _labelled_frames(audit_server.settings, audit_server.product)[:40]
    assert _set_rates(audit_server, pass_rate=0.3, defect_rate=1.0, reason="test").status_code == 200
    answers = _post(audit_server, frames, "line-fixed")
    with audit_server.client("qa") as qa:
        queue = qa.get("/v1/inspections", params={"audit": "true", "line_id": "line-fixed", "limit": 500}).json()
    times = [item["received_at"] for item in queue["items"]]
    assert times == sorted(times), "the audit queue is worked oldest first"
    selected = {answer["inspection_id"] for answer, _ in answers if answer["audit"]}
    assert {item["id"] for item in queue["items"]} == selected
    assert queue["audit"] == {"n_selected": len(selected), "n_audited": 0, "backlog": len(selected), "share_done": 0.0}
    _label(audit_server, [(a, label) for a, label in answers if a["audit"]])
    audited = _stats(audit_server, "line-fixed")
    assert audited["audit"]["n_audited"] == len(selected) and audited["audit"]["backlog"] == 0
    # QA then labels frames the audit did not select (as it would from the worth-a-look list).
    _label(audit_server, [(a, label) for a, label in answers if not a["audit"]])
    more = _stats(audit_server, "line-fixed")
    assert more["qa"]["n_reviewed"] == len(answers) > audited["qa"]["n_reviewed"]
    assert more["audit"] == audited["audit"]


def test_replicas_on_one_database_draw_independently(audit_server: LiveServer) -> None:
    frames = _labelled_frames(audit_server.settings, audit_server.product)[:40]
    assert _set_rates(audit_server, pass_rate=0.5, defect_rate=0.5, reason="test").status_code == 200
    with serve_on_loopback(audit_server.settings, audit_server.product, "second") as second:
        first_answers = _post(audit_server, frames, "line-replicas")
        second_answers = _post(second, frames, "line-replicas")
    first_draws = [answer["audit"] for answer, _ in first_answers]
    second_draws = [answer["audit"] for answer, _ in second_answers]
    # The same frames in the same order: one shared seed would draw the same pattern (chance 2^-40 otherwise).
    assert first_draws != second_draws
    assert 0 < sum(first_draws) < len(frames) and 0 < sum(second_draws) < len(frames)
    totals = _stats(audit_server, "line-replicas")
    assert totals["n"] == 2 * len(frames)
    assert totals["audit"]["n_selected"] == sum(first_draws) + sum(second_draws)
