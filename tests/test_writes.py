"""Writes by principals: allowed ones succeed (on exactly the rows the spec allows); refused ones
fail with an error and change nothing (attacks 8, 9, 10, 13, 14, 34)."""

from __future__ import annotations

import psycopg
import pytest

from agency_rls.checks.sample_world import WRITES
from tests.support import World


@pytest.mark.parametrize("case", WRITES, ids=[w["label"] for w in WRITES])
def test_write(world: World, case: dict[str, object]) -> None:
    role, statement = str(case["role"]), str(case["sql"])
    with world.acting_as(role) as cur:
        if case["allowed"]:
            cur.execute(statement)  # type: ignore[arg-type]
            assert cur.rowcount == case["rows"], case["label"]
        else:
            with pytest.raises(psycopg.Error):
                cur.execute(statement)  # type: ignore[arg-type]


def test_refused_receipts_for_hidden_and_missing_notices_fail_alike(world: World) -> None:
    """Attack 13: a receipt for a hidden notice and for a non-existent one give the same error."""
    from agency_rls.checks.sample_world import AGENCY_IDS, NOTICE_IDS

    messages = []
    for notice_id in (NOTICE_IDS["L01"], 999_999):
        with world.acting_as("agency_w11") as cur:
            with pytest.raises(psycopg.Error) as raised:
                cur.execute(
                    "INSERT INTO public.notice_receipt (notice_id, agency_id) VALUES (%s, %s)",
                    (notice_id, AGENCY_IDS["W11"]),
                )
            messages.append((type(raised.value).__name__, str(raised.value)))
    assert messages[0] == messages[1]


def test_a_prospect_gets_its_id_from_the_database_and_is_returned(world: World) -> None:
    from agency_rls.checks.sample_world import AGENCY_IDS

    with world.acting_as("agency_w11") as cur:
        row = cur.execute(
            "INSERT INTO public.customer (full_name, registered_by_agency_id) VALUES ('New Prospect', %s)"
            " RETURNING id, full_name",
            (AGENCY_IDS["W11"],),
        ).fetchone()
        assert row is not None and row[1] == "New Prospect"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            cur.execute(
                "INSERT INTO public.customer (id, full_name, registered_by_agency_id) VALUES (424242, 'x', %s)",
                (AGENCY_IDS["W11"],),
            )
