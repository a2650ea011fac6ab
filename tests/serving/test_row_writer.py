"""The server's group commit of inspection rows, on SQLite and PostgreSQL: every row stored before its request
returns, concurrent rows sharing commits, a bad row failing alone, nothing lost at close."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from inspection.errors import InspectionError
from inspection.storage.inspections import add_inspections, get_inspection
from inspection.storage.schema import Inspection
from serving.row_writer import InspectionRowWriter, RowWriterClosed


def _row(**overrides):
    fields = dict(
        id=str(uuid.uuid4()),
        product="widget",
        line_id="line-1",
        camera_id="cam-1",
        frame_id="f",
        captured_at=None,
        received_at=datetime.now(UTC),
        verdict="pass",
        defect_probability=0.1,
        defect_type=None,
        threshold=0.5,
        model_version=1,
        latency_ms=7.5,
        archive_path=None,
        anomaly_map_path=None,
    )
    return {**fields, **overrides}


def _count(sessions) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Inspection)) or 0)


def test_bulk_insert_is_all_or_none(sessions) -> None:
    first = _row()
    add_inspections(sessions, [first, _row()])
    assert _count(sessions) == 2
    with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error: a duplicate primary key
        # (id, received_at): the primary key on both databases (PostgreSQL's day partitions need the time in it)
        add_inspections(sessions, [_row(), _row(id=first["id"], received_at=first["received_at"])])
    assert _count(sessions) == 2  # the good row of the failed group was rolled back with it
    with pytest.raises(InspectionError, match="id and a received_at"):
        add_inspections(sessions, [_row(received_at=None)])


def test_concurrent_rows_are_all_stored_before_their_writes_return(sessions) -> None:
    rows = [_row(frame_id=str(i)) for i in range(300)]

    async def main() -> list[int]:
        writer = InspectionRowWriter(sessions)
        counts: list[int] = []

        async def one(row: dict) -> None:
            await writer.write(row)
            # Returned means committed: another connection already sees the row.
            assert get_inspection(sessions, row["id"]).frame_id == row["frame_id"]

        await asyncio.gather(*(one(row) for row in rows))
        counts.append(_count(sessions))
        await writer.close()
        return counts

    assert asyncio.run(main()) == [300]


def test_a_bad_row_fails_only_its_own_write(sessions) -> None:
    existing = _row()
    add_inspections(sessions, [existing])

    async def main() -> list[object]:
        writer = InspectionRowWriter(sessions)
        rows = [_row() for _ in range(20)]
        rows.insert(7, _row(id=existing["id"], received_at=existing["received_at"]))  # a duplicate key: refused
        outcomes = await asyncio.gather(*(writer.write(row) for row in rows), return_exceptions=True)
        await writer.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert [i for i, outcome in enumerate(outcomes) if outcome is not None] == [7]
    assert _count(sessions) == 21


def test_close_stores_what_was_handed_in_and_refuses_more(sessions) -> None:
    async def main() -> None:
        writer = InspectionRowWriter(sessions)
        pending = [asyncio.create_task(writer.write(_row())) for _ in range(50)]
        await asyncio.sleep(0)  # every task has handed its row in
        await writer.close()
        await asyncio.gather(*pending)
        with pytest.raises(RowWriterClosed):
            await writer.write(_row())

    asyncio.run(main())
    assert _count(sessions) == 50


def test_a_rows_preparation_runs_before_it_is_stored_and_a_failed_one_fails_alone(sessions) -> None:
    def archive(row: dict) -> None:  # what the server does there: archive the frame, note where
        row["archive_path"] = f"/archive/{row['id']}.jpg"

    def broken(_row: dict) -> None:
        raise OSError("disk full")

    prepared, plain, failing = _row(), _row(), _row()

    async def main() -> list[object]:
        writer = InspectionRowWriter(sessions)
        try:
            return await asyncio.gather(
                writer.write(prepared, prepare=archive),
                writer.write(plain),
                writer.write(failing, prepare=broken),
                return_exceptions=True,
            )
        finally:
            await writer.close()

    outcomes = asyncio.run(main())
    assert outcomes[:2] == [None, None] and isinstance(outcomes[2], OSError)
    assert get_inspection(sessions, prepared["id"]).archive_path == f"/archive/{prepared['id']}.jpg"
    assert get_inspection(sessions, plain["id"]).archive_path is None
    assert _count(sessions) == 2
