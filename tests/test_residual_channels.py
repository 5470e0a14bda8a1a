"""What row level security cannot hide (issue 7 §4): the reach of each residual channel, pinned.

A principal that runs SQL of its own (a direct login, ``provision --login``) learns things about
rows it cannot read, through channels PostgreSQL 15 offers no switch for. Each test measures one
channel on the sample world and asserts exactly what the principal learns, computed from what the
superuser reads at that moment, so that the test fails when the channel closes *or* widens: the
README table "What row level security cannot hide" is then out of date.

Measured on PostgreSQL 15 (the small world, analyzed):

- EXPLAIN ANALYZE, sequential scan (the default plan here; any principal can force it with its own
  ``SET enable_indexscan = off``): rows returned + "Rows Removed by Filter" = every row of the
  table, for every table a policy lets the principal read at all;
- EXPLAIN ANALYZE, index scan (``SET enable_seqscan = off``): where the principal's own leakproof
  condition becomes the index condition and the policy runs as a filter, "Rows Removed by Filter"
  answers "does this hidden key exist, and how many rows carry it": customer ids (any customer),
  handler rows per contract id (any insurer's contract), and policy numbers (of any insurer since
  revision 0006, whose entrustment guard is a per-row check); ranges make it a bisection that
  recovers those policy numbers. Since
  revision 0006 the same holds for contract and notice ids (their policies are per-row checks of
  the row's own handler links, no longer an index condition over the caller's materialised scope,
  which cost the largest agency half a second per statement). Where the policy itself is the
  index condition (``id = ANY (…)``: agency and entrustment by id) the plan for a hidden key and
  for a missing one are the same;
- planner estimates: ``pg_class.reltuples`` is the exact row count after ANALYZE; EXPLAIN row
  estimates move with hidden rows; ``pg_stats`` shows nothing of a protected table;
- ``pg_stat_user_tables`` / ``pg_statio_user_tables``: live row counts, and what others read;
- the role catalog: every principal's role name, so every agency's code;
- covert channels between two principals: large objects, role settings, default privileges.

Through the backend (``agency_rls.backend.PrincipalPool``) the same SQL has the same reach: the backend
closes these channels only because its callers never send SQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from agency_rls.backend import PrincipalPool
from tests.support import World

#: BUFFERS OFF: PostgreSQL 18 turns buffer counts on with ANALYZE; they vary from run to run (cache,
#: first plan of a scope function), so plans compared as text leave them out on every major.
EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS OFF, COSTS OFF, TIMING OFF, SUMMARY OFF) "
REMOVED = re.compile(r"Rows Removed by Filter: (\d+)")
ACTUAL = re.compile(r"actual rows=(\d+(?:\.\d+)?)")  # PostgreSQL 18 prints 3.00 (rows per loop, 2 decimals)
#: What a principal sets for itself to get a sequential scan, or an index scan.
SEQSCAN = ("SET enable_indexscan = off", "SET enable_indexonlyscan = off", "SET enable_bitmapscan = off")
INDEXSCAN = ("SET enable_seqscan = off", "SET enable_bitmapscan = off")


# -- helpers ---------------------------------------------------------------------------------------


@contextmanager
def logged_in(world: World, short: str, *settings: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct login as the principal (autocommit), with session settings it chose itself."""
    with world.login_as(short) as conn:
        conn.autocommit = True
        for setting in settings:
            conn.execute(setting)
        yield conn


def explain(conn: psycopg.Connection[Any], query: sql.Composable | str) -> list[str]:
    """EXPLAIN ANALYZE (no costs, timing or summary) of ``query``, one string per line."""
    statement = sql.SQL(EXPLAIN) + (sql.SQL(query) if isinstance(query, str) else query)  # type: ignore[arg-type]
    return [str(row[0]) for row in conn.execute(statement)]


def ungated(plan: list[str]) -> list[str]:
    """The plan below a gating ``Result`` whose one-time filter passed, else the plan as it is.

    Since revision 0008 an insurer's plan compares its folded insurer with the caller once per
    statement (a ``Result`` with a one-time filter above the scan); the scan's counts are below it."""
    if not plan[0].startswith("Result") or not any("One-Time Filter" in line for line in plan[1:3]):
        return plan
    for index, line in enumerate(plan):
        if line.startswith("  ->  "):
            return [line[6:]] + [rest[6:] for rest in plan[index + 1 :] if rest.startswith(" " * 6)]
    return plan


def removed(plan: list[str]) -> int:
    """The "Rows Removed by Filter" of the scan at the top of a one-table plan (0 when absent).

    The per-row checks of a policy (its SubPlans) print their own counts further down; the scanned
    table's line comes first, before any InitPlan or SubPlan."""
    own = [line for line in plan[1:] if line.startswith("  ") and not line.startswith("   ")]
    found = [int(m.group(1)) for line in own for m in [REMOVED.search(line)] if m]
    return found[0] if found else 0


def returned(plan: list[str]) -> int:
    match = ACTUAL.search(plan[0])
    assert match, plan
    rows = float(match.group(1))
    assert rows.is_integer(), plan  # one loop: a whole number of rows on every major
    return int(rows)


def one(conn: psycopg.Connection[Any], query: sql.Composable | str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def table(name: str) -> sql.Composed:
    return sql.SQL("{}").format(sql.Identifier("public", name))


def key(name: str) -> sql.Composable:
    """What a probe selects: every column, but the customer columns principals may select."""
    return sql.SQL("id, full_name") if name == "customer" else sql.SQL("*")


def protected_tables(superuser: psycopg.Connection[Any]) -> list[str]:
    rows = superuser.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
        " AND relrowsecurity ORDER BY 1"
    ).fetchall()
    assert len(rows) >= 9
    return [row[0] for row in rows]


def readable_tables(superuser: psycopg.Connection[Any], role: str) -> set[str]:
    """Protected tables where some permissive SELECT policy applies to ``role`` (from pg_policies)."""
    rows = superuser.execute(
        """
        SELECT DISTINCT p.tablename FROM pg_policies AS p
         WHERE p.schemaname = 'public' AND p.permissive = 'PERMISSIVE' AND p.cmd IN ('SELECT', 'ALL')
           AND (p.roles && ARRAY['public']::name[]
                OR EXISTS (SELECT FROM unnest(p.roles) AS r(name)
                            WHERE pg_has_role(%s, r.name, 'USAGE')))
        """,
        (role,),
    ).fetchall()
    return {row[0] for row in rows}


def entrusting_insurer_ids(superuser: psycopg.Connection[Any], agency_code: str) -> set[int]:
    """Insurers with a valid entrustment of the agency now (read by the superuser from the table)."""
    rows = superuser.execute(
        "SELECT e.insurer_id FROM public.entrustment AS e JOIN public.agency AS a ON a.id = e.agency_id"
        " WHERE a.code = %s AND e.valid_from <= now() AND (e.valid_to IS NULL OR now() < e.valid_to)",
        (agency_code,),
    ).fetchall()
    return {row[0] for row in rows}


def wait_for(read: Callable[[], Any], expected: Any, timeout: float = 15.0) -> Any:
    """Poll ``read`` until it returns ``expected`` (statistics reach shared memory asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def analyzed(superuser: psycopg.Connection[Any]) -> None:
    """Statistics for every table, as after any load (other modules may or may not have run ANALYZE)."""
    superuser.execute("ANALYZE")


# -- EXPLAIN ANALYZE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("short", ["agency_w11", "insurer_nl", "staff_nl_at_m1"])
def test_residual_channel_explain_analyze_counts_every_row(
    world: World, superuser: psycopg.Connection[Any], analyzed: None, short: str
) -> None:
    """Sequential scan: rows returned + removed = the table's row count, hidden rows included.

    The default plan of the analyzed small world is a sequential scan; the principal forces one
    anyway. A table no policy lets the principal read at all plans as ``Result`` (one-time filter
    false): nothing is scanned, nothing is counted.
    """
    readable = readable_tables(superuser, world.role(short))
    counted: dict[tuple[str, str], tuple[str, int, int]] = {}
    expected: dict[tuple[str, str], tuple[str, int, int]] = {}
    with logged_in(world, short) as default, logged_in(world, short, *SEQSCAN) as forced:
        for name in protected_tables(superuser):
            total = one(superuser, sql.SQL("SELECT count(*) FROM {}").format(table(name)))
            visible = one(forced, sql.SQL("SELECT count(*) FROM {}").format(table(name)))
            for mode, conn in (("default plan", default), ("seqscan forced", forced)):
                plan = ungated(explain(conn, sql.SQL("SELECT {} FROM {}").format(key(name), table(name))))
                node = plan[0].split(" on ")[0].split(" (")[0]
                if mode == "default plan" and name in readable and node != "Seq Scan":
                    # An index on the policy's own condition (the copied handler links, an
                    # addressee) fetches only candidate rows: what it removes is not the table.
                    assert returned(plan) == visible, plan
                    continue
                counted[name, mode] = (node, returned(plan), returned(plan) + removed(plan))
                if name in readable:
                    expected[name, mode] = ("Seq Scan", visible, total)
                else:
                    expected[name, mode] = ("Result", 0, 0)
    assert counted == expected
    assert any(e[1] < e[2] for e in expected.values()), "some rows must be hidden"


def probe_plans(
    conn: psycopg.Connection[Any], name: str, column: str, values: list[Any]
) -> dict[Any, tuple[int, str]]:
    """{value: (Rows Removed by Filter, plan text with the value blanked)} for ``column = value``."""
    found = {}
    for value in values:
        query = sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
            key(name), table(name), sql.Identifier(column), sql.Literal(value)
        )
        plan = explain(conn, query)
        assert plan[0].startswith("Index Scan using"), plan
        text = "\n".join(plan).replace(f"'{value}'::text", "?").replace(f"= {value})", "= ?)")
        found[value] = (removed(plan), text)
    return found


#: (table, column probed, absent value, does the channel reach hidden rows of this column?)
KEY_PROBES = [
    ("customer", "id", 999_999_999, True),
    ("contract_handler", "contract_id", 999_999_999, True),
    ("contract", "policy_number", "ZZ-0000", True),
    # Open since revision 0006: the policy is a per-row check on the row's own handler links, not
    # an index condition over the caller's materialised scope (which cost 0.5 s per statement for
    # the largest agency), so a key probe fetches a hidden row and the filter counts it.
    ("contract", "id", 999_999_999, True),
    ("notice", "id", 999_999_999, True),
    ("agency", "id", 999_999_999, False),
    ("entrustment", "id", 999_999_999, False),
]


@pytest.mark.parametrize(
    ("name", "column", "absent", "open_"), KEY_PROBES, ids=[f"{p[0]}.{p[1]}" for p in KEY_PROBES]
)
def test_residual_channel_explain_analyze_hidden_key_existence(
    world: World,
    superuser: psycopg.Connection[Any],
    analyzed: None,
    name: str,
    column: str,
    absent: Any,
    open_: bool,
) -> None:
    """Index scan on the principal's own condition, policy as filter: hidden keys counted one by one."""
    values = [
        row[0]
        for row in superuser.execute(
            sql.SQL("SELECT DISTINCT {} FROM {} ORDER BY 1").format(sql.Identifier(column), table(name))
        )
    ]
    total = {
        row[0]: row[1]
        for row in superuser.execute(
            sql.SQL("SELECT {0}, count(*) FROM {1} GROUP BY {0}").format(sql.Identifier(column), table(name))
        )
    }
    # Every hidden key, of every insurer: since revision 0006 the entrustment guard is a per-row
    # check (never an index condition, which read every row of the caller's insurers per statement).
    reach: Callable[[Any], bool] = lambda value: True  # noqa: E731
    with logged_in(world, "agency_w11", *INDEXSCAN) as conn:
        mine = {
            row[0]: row[1]
            for row in conn.execute(
                sql.SQL("SELECT {0}, count(*) FROM {1} GROUP BY {0}").format(
                    sql.Identifier(column), table(name)
                )
            )
        }
        plans = probe_plans(conn, name, column, [*values, absent])
    hidden = {value: total[value] - mine.get(value, 0) for value in values}
    assert any(hidden.values()), "the principal must have hidden rows in this table"
    told = {value: plans[value][0] for value in values}
    expected = {value: hidden[value] if open_ and reach(value) else 0 for value in values}
    assert told == expected
    assert plans[absent][0] == 0
    # A hidden key the channel does not reach plans exactly like a key that does not exist.
    for value in values:
        if mine.get(value, 0) == 0 and not (open_ and reach(value)):
            assert plans[value][1] == plans[absent][1], (value, plans[value][1])
    if open_:
        assert any(expected.values())


def test_residual_channel_explain_analyze_bisection_recovers_hidden_policy_numbers(
    world: World, superuser: psycopg.Connection[Any], analyzed: None
) -> None:
    """Range probes on the principal's own condition: every hidden policy number, by bisection.

    Of every insurer since revision 0006 (before it, only of the insurers entrusting the principal:
    the entrustment guard was an index condition, at the cost of reading every row of those insurers
    in every statement)."""
    codes = dict(superuser.execute("SELECT id, code FROM public.insurer").fetchall())
    contracts = superuser.execute("SELECT policy_number, insurer_id FROM public.contract").fetchall()
    assert all(re.fullmatch(r"[A-Z0-9]+-\d{4}", number) for number, _ in contracts), "the format bisected"
    probes = 0
    with logged_in(world, "agency_w11", *INDEXSCAN, "SET enable_sort = off") as conn:
        visible = {row[0] for row in conn.execute("SELECT policy_number FROM public.contract")}
        # insurer codes are public (the insurer table has no policy); the format is '<code>-dddd'
        readable_codes = {row[0] for row in conn.execute("SELECT code FROM public.insurer")}

        def hidden_between(code: str, low: int, high: int) -> int:
            nonlocal probes
            probes += 1
            query = (  # the order of the (insurer_id, policy_number) key: the plan that uses it
                "SELECT * FROM public.contract WHERE policy_number >= {} AND policy_number <= {}"
                " ORDER BY insurer_id, policy_number"
            )
            plan = explain(
                conn,
                sql.SQL(query).format(
                    sql.Literal(f"{code}-{low:04d}"), sql.Literal(f"{code}-{high - 1:04d}")
                ),
            )
            assert "using contract_insurer_id_policy_number_key" in plan[0], plan
            return removed(plan)

        def bisect(code: str, low: int, high: int, count: int) -> Iterator[str]:
            if count == 0:
                return
            if high - low == 1:
                yield f"{code}-{low:04d}"
                return
            middle = (low + high) // 2
            below = hidden_between(code, low, middle)
            yield from bisect(code, low, middle, below)
            yield from bisect(code, middle, high, count - below)

        recovered = {
            number
            for code in readable_codes
            for number in bisect(code, 0, 10000, hidden_between(code, 0, 10000))
        }
    hidden = {number for number, insurer in contracts if number not in visible}
    reachable = {number for number, _insurer in contracts if number not in visible}
    assert codes
    assert recovered == reachable == hidden
    assert reachable, "hidden numbers recovered"
    assert probes < 20 * len(reachable) + 2 * len(readable_codes), "a bisection, not an enumeration"


# -- planner estimates and statistics ---------------------------------------------------------------


def test_residual_channel_planner_estimates(
    world: World, superuser: psycopg.Connection[Any], analyzed: None
) -> None:
    """pg_class.reltuples/relpages: exact counts after ANALYZE; EXPLAIN estimates move with hidden rows."""
    tables = protected_tables(superuser)
    sizes = "SELECT c.relname, c.reltuples::bigint, c.relpages FROM pg_class AS c WHERE c.oid = {}::regclass"
    prospects = "Residual Probe %"
    s3 = one(superuser, "SELECT id FROM public.agency WHERE code = 'S3'")

    def estimate(conn: psycopg.Connection[Any]) -> int:
        """The row estimate of W11's customer read (a prospect's registering agency, hidden)."""
        plan = one(
            conn,
            "EXPLAIN (FORMAT JSON) SELECT id, full_name FROM public.customer WHERE registered_by_agency_id IS NOT NULL OR full_name <> ''",
        )
        return int(plan[0]["Plan"]["Plan Rows"])

    with logged_in(world, "agency_w11") as conn:
        for name in tables:
            query = sql.SQL(sizes).format(sql.Literal(f"public.{name}"))
            truth = superuser.execute(query).fetchone()
            assert conn.execute(query).fetchone() == truth
            assert truth[1] == one(superuser, sql.SQL("SELECT count(*) FROM {}").format(table(name))), name
        # pg_stats (and pg_stats_ext) hide protected tables: closed. (They exist: the harness looks
        # as the superuser, since they are hidden from a DBA without SUPERUSER too.)
        with world.superuser() as inspector:
            assert one(inspector, "SELECT count(*) FROM pg_stats WHERE tablename = 'customer'") > 0
        assert (
            one(conn, "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename <> 'insurer'")
            == 0
        )

        visible = one(conn, "SELECT count(*) FROM public.customer")
        total = one(superuser, "SELECT count(*) FROM public.customer")
        before = estimate(conn)
        assert before < total, "coarse: not the whole table"
        try:
            superuser.execute(
                "INSERT INTO public.customer (full_name, registered_by_agency_id)"
                " SELECT 'Residual Probe ' || g, %s FROM generate_series(1, 4000) AS g",
                (s3,),
            )
            superuser.execute("ANALYZE public.customer")
            assert one(conn, "SELECT count(*) FROM public.customer") == visible
            assert (
                one(conn, "SELECT reltuples::bigint FROM pg_class WHERE oid = 'public.customer'::regclass")
                == total + 4000
            )
            assert estimate(conn) > before, "4,000 hidden customers move W11's estimate"
        finally:
            superuser.execute("DELETE FROM public.customer WHERE full_name LIKE %s", (prospects,))
            superuser.execute("ANALYZE public.customer")
        assert estimate(conn) == before


def test_residual_channel_statistics_counters(
    world: World, superuser: psycopg.Connection[Any], analyzed: None
) -> None:
    """pg_stat_user_tables: exact live rows of every table, and what other sessions read (rows, scans)."""
    tables = protected_tables(superuser)
    counters = (
        "SELECT relname, n_live_tup, n_tup_ins, n_tup_upd, n_tup_del, seq_scan, seq_tup_read, idx_scan,"
        " idx_tup_fetch FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname = ANY (%s) ORDER BY 1"
    )
    io = "SELECT relname FROM pg_statio_user_tables WHERE schemaname = 'public' AND relname = ANY (%s) ORDER BY 1"
    with logged_in(world, "agency_w11") as conn, world.admin() as other:
        live = {
            name: one(superuser, sql.SQL("SELECT count(*) FROM {}").format(table(name))) for name in tables
        }

        def live_seen() -> dict[str, int]:
            return {row[0]: row[1] for row in conn.execute(counters, (tables,))}

        assert wait_for(live_seen, live) == live
        assert [row[0] for row in conn.execute(io, (tables,))] == tables  # block counts too

        def reads() -> tuple[int, int, int, int]:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT seq_scan, seq_tup_read, idx_scan, idx_tup_fetch FROM pg_stat_user_tables"
                " WHERE relid = 'public.customer'::regclass"
            ).fetchone()
            assert row is not None
            return tuple(row)  # type: ignore[return-value]

        mine = {row[0] for row in conn.execute("SELECT id FROM public.customer")}
        hidden_id = min({row[0] for row in superuser.execute("SELECT id FROM public.customer")} - mine)
        for session in (superuser, conn, other):  # nothing of theirs left to arrive late
            session.execute("SELECT pg_stat_force_next_flush()")  # flushed before the statement returns
        first = reads()
        for setting in SEQSCAN:
            other.execute(setting)
        other.execute("SELECT count(*) FROM public.customer")  # another session's sequential scan
        other.execute("RESET ALL")
        for setting in INDEXSCAN:
            other.execute(setting)
        other.execute("SELECT full_name FROM public.customer WHERE id = %s", (hidden_id,))  # and index fetch
        other.execute("SELECT pg_stat_force_next_flush()")
        expected = (first[0] + 1, first[1] + live["customer"], first[2] + 1, first[3] + 1)
        assert wait_for(reads, expected) == expected


# -- the role catalog ---------------------------------------------------------------------------------


def test_residual_channel_role_names_list_every_principal(
    world: World, superuser: psycopg.Connection[Any]
) -> None:
    """pg_roles and pg_auth_members: every principal, so every agency's code, and who is in which group."""
    prefix = world.prefix
    roles = "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1"
    members = (
        "SELECT g.rolname, m.rolname FROM pg_auth_members AS a JOIN pg_roles AS g ON g.oid = a.roleid"
        " JOIN pg_roles AS m ON m.oid = a.member WHERE starts_with(g.rolname, %s) ORDER BY 1, 2"
    )
    codes = {row[0].lower() for row in superuser.execute("SELECT code FROM public.agency")}
    with logged_in(world, "agency_w11") as conn:
        names = [row[0] for row in conn.execute(roles, (prefix,))]
        assert names == [row[0] for row in superuser.execute(roles, (prefix,))]
        assert conn.execute(members, (prefix,)).fetchall() == superuser.execute(members, (prefix,)).fetchall()
        readable = {row[0].lower() for row in conn.execute("SELECT code FROM public.agency")}
    from_roles = {n.removeprefix(f"{prefix}agency_") for n in names if n.startswith(f"{prefix}agency_")}
    assert from_roles == codes
    assert readable < codes, "W11 reads fewer agencies than the role names list"


# -- covert channels between two principals -----------------------------------------------------------


def test_residual_channel_covert_large_object(world: World, superuser: psycopg.Connection[Any]) -> None:
    """W11 writes a large object and grants it to PUBLIC; W12 finds it in the catalog and reads it."""
    message = b"hidden count 25"
    oid = None
    try:
        with logged_in(world, "agency_w11") as w11:
            oid = one(w11, "SELECT lo_from_bytea(0, %s)", (message,))
            w11.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO PUBLIC").format(sql.Literal(oid)))
        with logged_in(world, "agency_w12") as w12:
            owner = one(
                w12, "SELECT lomowner::regrole::text FROM pg_largeobject_metadata WHERE oid = %s", (oid,)
            )
            assert owner == world.role("agency_w11")
            assert one(w12, "SELECT lo_get(%s)", (oid,)) == message
    finally:
        if oid is not None:  # only its owner (or a superuser) may unlink it
            with world.superuser() as cleaner:
                cleaner.execute("SELECT lo_unlink(%s)", (oid,))


def test_residual_channel_covert_role_settings(world: World, superuser: psycopg.Connection[Any]) -> None:
    """W11 sets a default on its own role; every role reads it in pg_roles.rolconfig."""
    w11 = sql.Identifier(world.role("agency_w11"))
    try:
        with logged_in(world, "agency_w11") as conn:
            conn.execute(sql.SQL("ALTER ROLE {} SET application_name = 'hidden count 25'").format(w11))
        with logged_in(world, "agency_w12") as conn:
            config = one(
                conn, "SELECT rolconfig FROM pg_roles WHERE rolname = %s", (world.role("agency_w11"),)
            )
            assert config == ["application_name=hidden count 25"]
    finally:
        superuser.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(w11))


def test_residual_channel_covert_default_privileges_and_group_role(
    world: World, superuser: psycopg.Connection[Any]
) -> None:
    """W11 writes default privileges (for itself, and for its group role); W12 reads them in pg_default_acl.

    On PostgreSQL 15 membership implies SET: W11 can also act AS the agency group role. PostgreSQL 16
    lets a grant say ``SET FALSE``; then, and only then, SET ROLE to the group is refused.
    """
    w11, group = world.role("agency_w11"), world.role("rls_agency")
    acl = "SELECT defaclrole::regrole::text, defaclobjtype FROM pg_default_acl ORDER BY 1, 2"
    version = int(one(superuser, "SHOW server_version_num"))
    can_set = version < 160000 or bool(
        one(
            superuser,
            "SELECT bool_or(set_option) FROM pg_auth_members WHERE roleid = %s::regrole AND member = %s::regrole",
            (group, w11),
        )
    )
    before = superuser.execute(acl).fetchall()
    try:
        with logged_in(world, "agency_w11") as conn:
            conn.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")
            if can_set:
                conn.execute(
                    sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT SELECT ON TABLES TO PUBLIC").format(
                        sql.Identifier(group)
                    )
                )
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(group)))
                assert one(conn, "SELECT current_user") == group
                conn.execute("RESET ROLE")
            else:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(group)))
        with logged_in(world, "agency_w12") as conn:
            after = conn.execute(acl).fetchall()
        added = sorted(set(after) - set(before))
        assert added == sorted([(w11, "r"), *([(group, "r")] if can_set else [])])
        assert version >= 160000 or can_set, "PostgreSQL 15: a member can always SET ROLE"
    finally:
        with world.superuser() as cleaner:  # FOR ROLE needs its privileges (or SUPERUSER)
            for role in (w11, group):
                cleaner.execute(
                    sql.SQL(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE SELECT ON TABLES FROM PUBLIC"
                    ).format(sql.Identifier(role))
                )


# -- through the backend ------------------------------------------------------------------------------


def test_residual_channel_through_the_backend_is_the_same_sql(
    world: World, superuser: psycopg.Connection[Any], backend_conninfo: str, analyzed: None
) -> None:
    """Acting as W11 through PrincipalPool, the same SQL learns the same: the boundary is who writes the SQL.

    The backend's callers name a principal and call the application's functions; they never send SQL,
    so none of these probes can be run through it. Whatever SQL the application itself runs as W11
    has the reach of a direct login, and the pool's check-in resets the planner settings it chose.
    """
    total = one(superuser, "SELECT count(*) FROM public.customer")
    live = "SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'public.customer'::regclass"
    with PrincipalPool(backend_conninfo, min_size=1, max_size=1, timeout=10.0) as pool:
        with pool.acting_as(agency="W11") as conn:
            for setting in SEQSCAN:
                conn.execute(setting.replace("SET ", "SET LOCAL "))
            plan = explain(conn, "SELECT id, full_name FROM public.customer")
            assert returned(plan) + removed(plan) == total
            assert one(conn, live) == one(superuser, live)
            mine = {row[0] for row in conn.execute("SELECT id FROM public.customer")}
        hidden_id = min({row[0] for row in superuser.execute("SELECT id FROM public.customer")} - mine)
        with pool.acting_as(agency="W11") as conn:
            conn.execute("SET enable_seqscan = off")  # session-level: the check-in resets it
            conn.execute("SET LOCAL enable_bitmapscan = off")
            plan = explain(
                conn,
                sql.SQL("SELECT id, full_name FROM public.customer WHERE id = {}").format(
                    sql.Literal(hidden_id)
                ),
            )
            assert removed(plan) == 1
        with pool.acting_as(agency="W11") as conn:
            assert one(conn, "SHOW enable_seqscan") == "on"
