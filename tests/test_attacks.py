"""The attacks of threats.md, each tried by connecting as the attacking role.

Personas (sample world): W = agency_w11 (working agency under S1, entrusted by NL, not LF),
S = agency_s1 (its supervising agency), T = staff_nl_at_m1 (seconded NL staff at M1),
I = insurer_nl. Numbers in test names and docstrings refer to threats.md's attack list.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from agency_rls.rls_policies.provision import provision
from psycopg import sql

from agency_rls.checks.sample_world import (
    AGENCY_IDS,
    CONTRACT_IDS,
    CUSTOMER_IDS,
    EXPECTED,
    NOTICE_IDS,
    TABLES,
    id_to_key,
    visible_keys,
)
from tests.support import LOGIN_PASSWORD, World, sample_world_on, triggers_off

W, S, T, INSURER = "agency_w11", "agency_s1", "staff_nl_at_m1", "insurer_nl"
PROTECTED = [t for t in TABLES if t != "insurer"]


@pytest.fixture(scope="module")
def mutable_world(server: str) -> Iterator[World]:
    """A world of its own for attacks that change data or policies."""
    with sample_world_on(server, "mutable") as built:
        yield built


def keys_as(world: World, superuser: psycopg.Connection, role: str, table: str) -> frozenset[str]:
    with world.acting_as(role):
        return visible_keys(world.backend, superuser, table, prefix=world.prefix)


@pytest.fixture
def extra_role(world: World, superuser: psycopg.Connection) -> Iterator[str]:
    """A LOGIN role of the world's prefix that is NOT a principal; dropped afterwards."""
    name = world.role("intruder")
    superuser.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(LOGIN_PASSWORD))
    )
    try:
        yield name
    finally:
        superuser.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


# 1–3: the incident, spelled out with ids ---------------------------------------------------------


def test_1_2_working_agency_reads_no_contract_of_its_supervisor_it_does_not_handle(
    world: World, superuser: psycopg.Connection
) -> None:
    """Incidents 1 and 2: W sees exactly its own handled NL contracts, none of S's (direct or gateway)."""
    seen = keys_as(world, superuser, W, "contract")
    assert seen == {"NL-1003", "NL-1004"}
    assert not seen & (EXPECTED[S]["contract"] - EXPECTED[W]["contract"])


def test_3_working_agency_without_entrustment_sees_no_notice_of_that_insurer_not_even_a_count(
    world: World,
) -> None:
    """Incident 3: no LF notice reaches W (no LF entrustment), not even addressed to W itself."""
    with world.acting_as(W) as cur:
        counts = cur.execute(
            "SELECT i.code, count(n.id) FROM public.insurer i LEFT JOIN public.notice n ON n.insurer_id = i.id"
            " GROUP BY i.code ORDER BY i.code"
        ).fetchall()
    assert dict(counts) == {"GW1": 0, "GW2": 0, "GW3": 0, "LF": 0, "NL": 6}


# 4: revocation takes effect at the next transaction ------------------------------------------------


def test_4_an_ended_entrustment_or_handler_link_removes_access_at_once(mutable_world: World) -> None:
    with mutable_world.admin() as admin:
        with mutable_world.acting_as(W) as cur:
            assert cur.execute("SELECT count(*) FROM public.contract").fetchone() == (2,)
        admin.execute(
            "UPDATE public.contract_handler SET valid_to = now() WHERE contract_id = %s AND agency_id = %s",
            (CONTRACT_IDS["NL-1003"], AGENCY_IDS["W11"]),
        )
        with mutable_world.acting_as(W) as cur:
            assert cur.execute("SELECT policy_number FROM public.contract").fetchall() == [("NL-1004",)]
        admin.execute(
            "UPDATE public.entrustment SET valid_to = now() WHERE agency_id = %s AND valid_to IS NULL",
            (AGENCY_IDS["W11"],),
        )
        with mutable_world.acting_as(W) as cur:
            for table in ("contract", "notice", "contract_handler"):
                assert cur.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (0,), table


# 13–14: keys and constraints do not reveal hidden rows -------------------------------------------


def test_14_referencing_a_hidden_row_fails_like_a_missing_one(world: World) -> None:
    """No row a principal may write references a customer; the references it can write are a
    prospect's agency and a receipt's notice (the latter in test_writes). A prospect registered
    for a hidden agency and for a non-existent one fail with the same error: WITH CHECK runs
    before the foreign key could reveal which agency exists."""
    errors = []
    for agency_id in (AGENCY_IDS["S3"], 987_654):  # S3 is outside W11's view; 987654 does not exist
        with world.acting_as(W) as cur, pytest.raises(psycopg.Error) as raised:
            cur.execute(
                "INSERT INTO public.customer (full_name, registered_by_agency_id) VALUES ('Probe', %s)",
                (agency_id,),
            )
        errors.append((raised.value.sqlstate, str(raised.value)))
    assert errors[0] == errors[1]
    assert errors[0][0] == "42501"  # insufficient_privilege: new row violates row-level security


# 10–12: RETURNING, ON CONFLICT, MERGE ------------------------------------------------------------


def test_10_update_returning_aimed_at_hidden_rows_returns_nothing(
    world: World, superuser: psycopg.Connection
) -> None:
    with world.acting_as(W) as cur:
        cur.execute(
            "UPDATE public.customer SET phone = 'x' WHERE id = %s RETURNING full_name, birth_date",
            (CUSTOMER_IDS["Kimura Hina"],),
        )
        assert cur.fetchall() == []
    with world.acting_as(W) as cur, pytest.raises(psycopg.errors.InsufficientPrivilege):
        cur.execute("DELETE FROM public.customer WHERE id = %s RETURNING *", (CUSTOMER_IDS["Kimura Hina"],))


def test_11_insert_on_conflict_on_a_hidden_key_errors_without_its_values(world: World) -> None:
    with world.acting_as(W) as cur, pytest.raises(psycopg.Error) as raised:
        cur.execute(
            "INSERT INTO public.notice_receipt (notice_id, agency_id) VALUES (%s, %s)"
            " ON CONFLICT (notice_id, agency_id) DO UPDATE SET read_at = now() RETURNING *",
            (NOTICE_IDS["N01"], AGENCY_IDS["S1"]),
        )
    assert "N01" not in str(raised.value)


def test_12_merge_cannot_touch_hidden_rows(world: World, superuser: psycopg.Connection) -> None:
    hidden = CUSTOMER_IDS["Kimura Hina"]
    before = superuser.execute("SELECT phone FROM public.customer WHERE id = %s", (hidden,)).fetchone()
    with world.acting_as(W) as cur:
        try:
            cur.execute(
                "MERGE INTO public.customer c USING (SELECT %s::bigint AS id) s ON c.id = s.id"
                " WHEN MATCHED THEN UPDATE SET phone = 'merged'",
                (hidden,),
            )
            assert cur.rowcount == 0
        except psycopg.Error:
            pass
    after = superuser.execute("SELECT phone FROM public.customer WHERE id = %s", (hidden,)).fetchone()
    assert after == before


# 15: no CREATE anywhere; temporary objects shadow nothing ----------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE public.evil (id int)",
        "CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION agency_rls.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE SCHEMA evil",
        "TRUNCATE public.contract",
        "TRUNCATE public.notice_receipt",
    ],
)
def test_15_34_principal_cannot_create_or_truncate(world: World, statement: str) -> None:
    with world.acting_as(W) as cur, pytest.raises(psycopg.errors.InsufficientPrivilege):
        cur.execute(statement)


def test_34_principal_cannot_reference_a_protected_table(world: World) -> None:
    """No REFERENCES privilege, and the only tables W may create (temporary ones) cannot reference."""
    with world.acting_as(W) as cur:
        privileges = cur.execute(
            "SELECT bool_or(has_table_privilege(current_user, c.oid, 'REFERENCES'))"
            "  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
        ).fetchone()
        assert privileges == (False,)
    with world.acting_as(W) as cur, pytest.raises(psycopg.Error):
        cur.execute("CREATE TEMP TABLE probe (c bigint REFERENCES public.contract (id))")


def test_15_temporary_objects_shadow_nothing_a_policy_uses(
    world: World, superuser: psycopg.Connection
) -> None:
    """Policies and scope functions use qualified names and a pinned search_path ending in pg_temp."""
    with world.acting_as(W) as cur:
        cur.execute(
            "CREATE TEMP TABLE principal (role_name text, kind text, agency_id bigint, insurer_id bigint)"
        )
        cur.execute("INSERT INTO principal VALUES (current_user, 'agency', %s, NULL)", (AGENCY_IDS["S1"],))
        cur.execute("CREATE TEMP TABLE contract_handler (contract_id bigint, agency_id bigint)")
        cur.execute(
            "CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT 'epoch'::timestamptz$$"
        )
        cur.execute("SET LOCAL search_path = pg_temp, public")
        ids = [r[0] for r in cur.execute("SELECT id FROM public.contract").fetchall()]
    keys = id_to_key(superuser, "contract")
    assert {keys[i] for i in ids} == EXPECTED[W]["contract"]


# 16: hidden rows never reach a user's non-leakproof filter ---------------------------------------


def test_16_division_by_zero_trap_is_never_sprung_by_hidden_rows(world: World) -> None:
    with world.acting_as(W) as cur:
        count = cur.execute(
            "SELECT count(*) FROM public.contract"
            " WHERE 1 / (CASE WHEN policy_number LIKE 'GW%%' OR policy_number = 'NL-1001' THEN 0 ELSE 1 END) = 1"
        ).fetchone()
    assert count == (2,)


# 17: identity is not a setting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spoof",
    [
        "SET LOCAL app.agency_id = '{s_id}'",
        "SELECT set_config('app.agency_id', '{s_id}', true)",
        "SELECT set_config('app.role', '{s_role}', true)",
        "SET LOCAL application_name = '{s_role}'",
    ],
)
def test_17_custom_settings_change_nothing(world: World, superuser: psycopg.Connection, spoof: str) -> None:
    baseline = {table: keys_as(world, superuser, W, table) for table in PROTECTED}
    with world.acting_as(W) as cur:
        cur.execute(spoof.format(s_id=AGENCY_IDS["S1"], s_role=world.role(S)))  # type: ignore[arg-type]
        for table in PROTECTED:
            ids = [
                r[0]
                for r in cur.execute(
                    f"SELECT {'role_name' if table == 'principal' else 'id'} FROM public.{table}"
                )
            ]
            mapping = id_to_key(superuser, table, prefix=world.prefix)
            assert {mapping[i] for i in ids} == baseline[table], (spoof, table)


@pytest.mark.parametrize(
    "switch",
    [
        "SET ROLE {s}",
        "SELECT set_config('role', '{s_raw}', false)",
        "SET SESSION AUTHORIZATION {s}",
        "SET ROLE {backend}",
    ],
)
def test_17_a_directly_logged_in_principal_cannot_become_another(world: World, switch: str) -> None:
    with world.login_as(W) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            switch.format(
                s=sql.Identifier(world.role(S)).as_string(conn),
                s_raw=world.role(S),
                backend=sql.Identifier(world.role("rls_backend")).as_string(conn),
            )  # type: ignore[arg-type]
        )


# 18: roles that are not principals see nothing ---------------------------------------------------


def test_18_a_role_that_only_inherits_a_principal_sees_nothing(
    world: World, superuser: psycopg.Connection, extra_role: str
) -> None:
    superuser.execute(
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(world.role(W)), sql.Identifier(extra_role))
    )
    with psycopg.connect(world.db.login_conninfo(extra_role)) as conn:
        for table in PROTECTED:
            assert conn.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (0,), table
            conn.rollback()
        with pytest.raises(psycopg.Error):
            conn.execute(
                "INSERT INTO public.customer (full_name, registered_by_agency_id) VALUES ('x', %s)",
                (AGENCY_IDS["W11"],),
            )


def test_18_a_group_member_without_a_principal_row_sees_nothing(
    world: World, superuser: psycopg.Connection, extra_role: str
) -> None:
    for group in ("rls_agency", "rls_agency_writer", "rls_insurer"):
        superuser.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(world.role(group)), sql.Identifier(extra_role))
        )
    with psycopg.connect(world.db.login_conninfo(extra_role)) as conn:
        for table in PROTECTED:
            assert conn.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (0,), table
        for function in (
            "handling_agency_ids",
            "addressee_agency_ids",
            "planned_agency_ids",
            "scope_insurer_ids",
        ):
            assert conn.execute(f"SELECT agency_rls.{function}()").fetchone() == ([],), function


# 19: every executable function, enumerated from the catalog -------------------------------------

#: What each scope function returns, as the table whose rows the caller must be able to see.
FUNCTION_TABLES = {
    "insurer_id": "insurer",
    "unrestricted_agency_id": "agency",
    "restricted_agency_id": "agency",
    "scope_insurer_ids": "insurer",
    "handling_agency_ids": "agency",
    "addressee_agency_ids": "agency",
    "planned_agency_ids": "agency",
    "planned_restriction": "insurer",
    "planned_insurer_id": "insurer",
    "visible_agency_ids": "agency",
    "visible_supervision_ids": "supervision",
    "visible_entrustment_ids": "entrustment",
    "role_prefix": None,
}


@pytest.mark.parametrize("persona", [W, T, INSURER])
def test_19_every_function_a_principal_can_execute_reveals_only_its_own_scope(
    world: World, superuser: psycopg.Connection, persona: str
) -> None:
    functions = superuser.execute(
        """
        SELECT p.oid::regprocedure::text, p.proname, p.pronargs
          FROM pg_proc p
         WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
           AND has_function_privilege(%s, p.oid, 'EXECUTE')""",
        (world.role(persona),),
    ).fetchall()
    assert {name for _, name, _ in functions} == set(FUNCTION_TABLES), "a new function needs a check here"
    for signature, name, nargs in functions:
        assert nargs == 0, f"{signature} takes an argument a principal could choose"
        table = FUNCTION_TABLES[name]
        with world.acting_as(persona) as cur:
            # Whatever the caller sets first, the answer is about the caller only.
            cur.execute("SELECT set_config('app.agency_id', %s, true)", (str(AGENCY_IDS["S1"]),))
            value = cur.execute(f"SELECT {signature.replace('()', '')}()").fetchone()[0]
            if table is None:
                assert value == world.prefix
                continue
            visible = {r[0] for r in cur.execute(f"SELECT id FROM public.{table}")}
        returned = set(value if isinstance(value, list) else [] if value is None else [value])
        assert returned <= visible, (
            f"{signature} as {persona} returns ids it cannot see: {returned - visible}"
        )


# 21–23: state does not survive transactions; plans are not shared across roles ------------------


def test_21_22_nothing_carries_over_to_the_next_transaction(world: World) -> None:
    with world.acting_as(S) as cur:
        cur.execute("SELECT count(*) FROM public.contract")
    with pytest.raises(psycopg.errors.DivisionByZero), world.acting_as(S) as cur:
        cur.execute("SELECT 1 / 0")
    with world.backend.transaction(force_rollback=True):
        assert world.backend.execute("SELECT current_user = session_user").fetchone() == (True,)
    with world.acting_as(W) as cur:
        assert cur.execute("SELECT count(*) FROM public.contract").fetchone() == (2,)


def test_23_plans_prepared_as_one_principal_run_as_another_return_the_others_rows(
    world: World, superuser: psycopg.Connection
) -> None:
    """CVE-2016-2193 / CVE-2023-2455 / CVE-2024-10976 style: PREPARE as S, EXECUTE as W."""
    keys = id_to_key(superuser, "contract")
    statements = {
        "plain": "SELECT id FROM public.contract",
        "subquery": "SELECT id FROM (SELECT * FROM public.contract) c WHERE c.id IN (SELECT id FROM public.contract)",
        "cte": "WITH c AS MATERIALIZED (SELECT id FROM public.contract) SELECT id FROM c",
    }
    try:
        for name, query in statements.items():
            world.backend.execute(f"PREPARE p_{name} AS {query}")
        for _ in range(7):  # past the plan cache's custom-plan threshold (5)
            with world.acting_as(S) as cur:
                for name in statements:
                    ids = {r[0] for r in cur.execute(f"EXECUTE p_{name}")}
                    assert {keys[i] for i in ids} == EXPECTED[S]["contract"], name
        with world.acting_as(W) as cur:
            for name in statements:
                ids = {r[0] for r in cur.execute(f"EXECUTE p_{name}")}
                assert {keys[i] for i in ids} == EXPECTED[W]["contract"], name
    finally:
        world.backend.execute("DEALLOCATE ALL")


# 24–25: row_security off, COPY ------------------------------------------------------------------


def test_24_row_security_off_is_an_error_not_a_bypass(world: World) -> None:
    with world.acting_as(W) as cur:
        cur.execute("SET LOCAL row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            cur.execute("SELECT count(*) FROM public.contract")


def test_25_copy_out_shows_only_visible_rows_and_copy_in_is_refused(world: World) -> None:
    with world.acting_as(W) as cur:
        with cur.copy("COPY (SELECT policy_number FROM public.contract ORDER BY 1) TO STDOUT") as copy:
            text = b"".join(bytes(chunk) for chunk in copy).decode()
        assert text.split() == ["NL-1003", "NL-1004"]
    with world.acting_as(W) as cur, pytest.raises(psycopg.errors.InsufficientPrivilege):
        with cur.copy("COPY public.contract (insurer_id, policy_number, policyholder_id) FROM STDIN") as copy:
            copy.write_row((1, "X-1", 1))


# 32: a permissive policy added later cannot widen the entrustment guard ----------------------------


def test_32_a_later_permissive_policy_does_not_widen_the_restrictive_guard(mutable_world: World) -> None:
    with mutable_world.admin() as admin:
        admin.execute(
            sql.SQL(
                "CREATE POLICY careless ON public.contract AS PERMISSIVE FOR SELECT TO {} USING (id > 0)"
            ).format(sql.Identifier(mutable_world.role("rls_agency")))
        )
        admin.execute(
            sql.SQL(
                "CREATE POLICY careless ON public.notice AS PERMISSIVE FOR SELECT TO {} USING (id > 0)"
            ).format(sql.Identifier(mutable_world.role("rls_agency")))
        )
        try:
            with mutable_world.acting_as("agency_w12") as cur:
                sources = cur.execute(
                    "SELECT i.code, count(*) FROM public.contract c JOIN public.insurer i ON i.id = c.insurer_id"
                    " GROUP BY 1 ORDER BY 1"
                ).fetchall()
                notices = cur.execute(
                    "SELECT DISTINCT i.code FROM public.notice n JOIN public.insurer i ON i.id = n.insurer_id"
                ).fetchall()
            # W12 is entrusted by NL and LF only: the careless policy widens within them, never beyond.
            assert {code for code, _ in sources} <= {"NL", "LF"}
            assert {code for (code,) in notices} <= {"NL", "LF"}
        finally:
            admin.execute("DROP POLICY careless ON public.contract")
            admin.execute("DROP POLICY careless ON public.notice")


# 35: statistics ----------------------------------------------------------------------------------


def test_35_statistics_of_protected_tables_are_hidden(world: World, superuser: psycopg.Connection) -> None:
    superuser.execute("ANALYZE")
    superuser.execute(
        "CREATE STATISTICS IF NOT EXISTS public.contract_stats ON insurer_id, source FROM public.contract"
    )
    superuser.execute("ANALYZE public.contract")
    try:
        # The statistics exist: pg_stats hides them from the DBA too (its row security is active),
        # so the harness looks as the superuser.
        with world.superuser() as inspector:
            assert (
                inspector.execute(
                    "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = 'contract'"
                ).fetchone()[0]
                > 0
            )
        with world.acting_as(W) as cur:
            assert cur.execute(
                "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename <> 'insurer'"
            ).fetchone() == (0,)
            assert cur.execute(
                "SELECT count(*) FROM pg_stats_ext WHERE schemaname = 'public'"
            ).fetchone() == (0,)
    finally:
        superuser.execute("DROP STATISTICS IF EXISTS public.contract_stats")


# 37–38: aggregates and joins count only the scope ------------------------------------------------


def test_37_38_aggregates_and_joins_stay_in_scope(world: World, superuser: psycopg.Connection) -> None:
    join = (
        "SELECT DISTINCT cu.full_name FROM public.contract c JOIN public.customer cu"
        " ON cu.id IN (c.policyholder_id, c.insured_id)"
    )
    with world.acting_as(W) as cur:
        per_insurer = cur.execute(
            "SELECT i.code, count(*) FROM public.contract c JOIN public.insurer i ON i.id = c.insurer_id"
            " GROUP BY 1"
        ).fetchall()
        joined = {name for (name,) in cur.execute(join)}
    # The same join over W's expected contracts, read by the superuser: exactly those parties.
    expected_parties = {
        name
        for (name,) in superuser.execute(
            join + " WHERE c.policy_number = ANY (%s)", (sorted(EXPECTED[W]["contract"]),)
        )
    }
    assert per_insurer == [("NL", len(EXPECTED[W]["contract"]))]
    assert joined == expected_parties
    assert joined <= EXPECTED[W]["customer"]


def test_provisioning_never_adopts_postgres_or_the_owner_through_a_principal_row(
    mutable_world: World,
) -> None:
    """The spec's provisioning rules, on a full world: the database refuses a row naming a management
    role; one that a load with triggers off got in anyway is refused by provisioning."""
    from agency_rls.rls_policies.provision import ProvisionError

    with mutable_world.admin() as admin:
        for name in ("postgres", mutable_world.role("rls_owner")):
            with pytest.raises(psycopg.errors.DuplicateObject, match="already exists"):
                admin.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', %s)",
                    (name, AGENCY_IDS["W11"]),
                )
            with triggers_off(mutable_world.db) as loader:
                loader.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id) VALUES (%s, 'agency', %s)",
                    (name, AGENCY_IDS["W11"]),
                )
            with pytest.raises(ProvisionError):
                provision(admin)
            admin.execute("DELETE FROM public.principal WHERE role_name = %s", (name,))
