"""``agency-rls matrix``: exact counts per principal, write grants, read-only, HTML, scale.

The counts are checked against ``sample_world.EXPECTED`` (the hand-derived reading of the spec in
``scenarios/sample_world.yaml``),
so the matrix is proven to report what each principal really reads, not what the catalog implies.

The matrix acts as each principal with ``SET ROLE`` and refuses a connection without SUPERUSER, so
it runs as the superuser (``superuser_url``) in either mode; with ``AGENCY_RLS_TEST_AS=dba`` the
worlds it reads were installed, loaded and provisioned by the DBA.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import time
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from agency_rls.rls_policies.names import ManagementRoles
from agency_rls.rls_policies.provision import provision
from agency_rls.schema import ALL_TABLES
from agency_rls.scripts.cli import app
from psycopg import sql
from typer.testing import CliRunner, Result

from agency_rls.checks.matrix import Matrix, PrincipalAccess, Privilege, TableAccess, take_matrix
from agency_rls.checks.matrix_html import render_html
from agency_rls.checks.sample_world import EXPECTED, PRINCIPALS, STAFF_ROLE
from tests.catalog import snapshot
from tests.support import ScratchDatabase, World, triggers_off

WIDE = {"COLUMNS": "400"}  # rich would otherwise fold role names at 80 columns


def run_matrix(url: str, *args: str) -> Result:
    """``agency-rls matrix --database-url URL ARGS`` in-process."""
    return CliRunner().invoke(app, ["matrix", "--database-url", url, *args], env=WIDE)


def matrix_json(url: str, *args: str) -> dict[str, dict[str, Any]]:
    """The JSON matrix, by role name."""
    result = run_matrix(url, "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return {entry["role"]: entry for entry in json.loads(result.stdout)}


def with_options(url: str, options: str) -> str:
    """``url`` with a libpq ``options`` parameter (server settings for the session)."""
    return f"{url}{'&' if '?' in url else '?'}options={quote(options)}"


def data_snapshot(conn: psycopg.Connection, prefix: str) -> dict[str, object]:
    """Row count and checksum of every table, plus the catalog and the prefix's roles."""
    tables = {}
    for name in ALL_TABLES:
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} AS t"
        ).format(sql.Identifier("public", name))
        tables[name] = conn.execute(query).fetchone()
    return {"tables": tables, **snapshot(conn, prefix)}


def test_help() -> None:
    result = CliRunner().invoke(app, ["matrix", "--help"], env=WIDE)
    assert result.exit_code == 0
    for option in ("--database-url", "--principal", "--format", "--html"):
        assert option in result.output


# ------------------------------------------------------------------------------------------------
# The sample world
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_matrix(world: World) -> dict[str, dict[str, Any]]:
    """The JSON matrix of the whole sample world (taken once for the module)."""
    return matrix_json(world.db.superuser_url)


def test_counts_are_exactly_what_each_principal_must_see(
    world: World, world_matrix: dict[str, dict[str, Any]]
) -> None:
    assert set(world_matrix) == {world.role(p) for p in PRINCIPALS}
    for principal in PRINCIPALS:
        entry = world_matrix[world.role(principal)]
        assert entry["provisioned"] is True
        assert list(entry["tables"]) == list(ALL_TABLES)
        for table in ALL_TABLES:
            cell = entry["tables"][table]
            assert (principal, table, cell["select"]) == (principal, table, len(EXPECTED[principal][table]))
            assert cell["select_denied"] is False


def test_whom_each_principal_acts_for(world: World, world_matrix: dict[str, dict[str, Any]]) -> None:
    staff = world_matrix[world.role(STAFF_ROLE)]
    assert (staff["kind"], staff["agency"], staff["insurer"], staff["restricted"]) == (
        "agency",
        "M1",
        "NL",
        True,
    )
    w11 = world_matrix[world.role("agency_w11")]
    assert (w11["kind"], w11["agency"], w11["insurer"], w11["restricted"]) == ("agency", "W11", None, False)
    nl = world_matrix[world.role("insurer_nl")]
    assert (nl["kind"], nl["agency"], nl["insurer"], nl["restricted"]) == ("insurer", None, "NL", False)


def test_write_grants(world: World, world_matrix: dict[str, dict[str, Any]]) -> None:
    """Only unrestricted agencies write, and only by column: customer and notice_receipt."""
    for principal in PRINCIPALS:
        entry = world_matrix[world.role(principal)]
        writer = entry["kind"] == "agency" and not entry["restricted"]
        for table, cell in entry["tables"].items():
            assert cell["delete"] == "denied", (principal, table)
            if writer and table == "customer":
                assert (cell["insert"], cell["update"]) == ("columns", "columns"), principal
            elif writer and table == "notice_receipt":
                assert (cell["insert"], cell["update"]) == ("columns", "denied"), principal
            else:
                assert (cell["insert"], cell["update"]) == ("denied", "denied"), (principal, table)
    assert world_matrix[world.role(STAFF_ROLE)]["restricted"] is True
    assert any(e["kind"] == "insurer" for e in world_matrix.values())


def test_it_writes_nothing(world: World) -> None:
    """Same rows, catalog and roles afterwards, and it runs where the server refuses every write."""
    read_only_url = with_options(world.db.superuser_url, "-c default_transaction_read_only=on")
    # The option really makes the session read-only (otherwise the run below would prove nothing).
    with (
        psycopg.connect(read_only_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.ReadOnlySqlTransaction),
    ):
        conn.execute("CREATE TEMP TABLE probe (x int)")
    with world.admin() as conn:
        before = data_snapshot(conn, world.prefix)
    text = run_matrix(read_only_url)
    assert text.exit_code == 0, text.stderr
    as_json = run_matrix(read_only_url, "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    with world.admin() as conn:
        assert data_snapshot(conn, world.prefix) == before


def test_the_connection_is_left_as_it_was(world: World) -> None:
    """After the run the DBA's own role is back and no transaction is left open."""
    with world.superuser() as conn:
        session_role = conn.execute("SELECT current_user").fetchone()
        matrix = take_matrix(conn, ["agency_w11"])
        assert [p.role for p in matrix.principals] == [world.role("agency_w11")]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT current_user").fetchone() == session_role
        assert conn.read_only is None and conn.isolation_level is None


def test_principal_option_accepts_role_names_with_or_without_prefix(world: World) -> None:
    found = matrix_json(
        world.db.superuser_url, "--principal", "agency_w11", "--principal", world.role("insurer_nl")
    )
    assert set(found) == {world.role("agency_w11"), world.role("insurer_nl")}
    assert found[world.role("agency_w11")]["tables"]["contract"]["select"] == len(
        EXPECTED["agency_w11"]["contract"]
    )


def test_an_unknown_principal_is_a_one_line_error(world: World) -> None:
    result = run_matrix(world.db.superuser_url, "--principal", "agency_w11", "--principal", "agency_nobody")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("agency-rls: no principal row for 'agency_nobody'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_non_superuser_connection_is_refused(world: World) -> None:
    """The backend may SET ROLE to every principal but cannot read the principal table."""
    result = run_matrix(world.db.login_conninfo(world.role("rls_backend")))
    assert result.exit_code == 1
    assert result.stderr.startswith("agency-rls: the matrix needs a superuser connection")
    assert len(result.stderr.strip().splitlines()) == 1


def test_text_output(world: World) -> None:
    result = run_matrix(world.db.superuser_url, "--principal", "agency_w11", "--principal", STAFF_ROLE)
    assert result.exit_code == 0, result.stderr
    assert world.role("agency_w11") in result.stdout
    assert world.role(STAFF_ROLE) in result.stdout
    assert "M1 / NL only" in result.stdout
    assert " iu" in result.stdout  # W11's column grants on customer
    for table in ALL_TABLES:
        assert table in result.stdout


class _GridParser(HTMLParser):
    """Collects the body rows of the matrix table and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.urls: list[str] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "action")]
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_html_page(world: World, tmp_path: Path) -> None:
    page = tmp_path / "matrix.html"
    result = run_matrix(world.db.superuser_url, "--format", "json", "--html", str(page))
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)  # stdout stays pure JSON; the confirmation goes to stderr
    assert f"Wrote {page}" in result.stderr
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert "<script>" in html and "<style>" in html
    parser = _GridParser()
    parser.feed(html)
    assert parser.urls == []
    by_role = {row[0]: row for row in parser.rows}
    assert set(by_role) == {world.role(p) for p in PRINCIPALS}
    w11 = by_role[world.role("agency_w11")]
    contract_column = 4 + ALL_TABLES.index("contract")
    assert w11[contract_column] == str(len(EXPECTED["agency_w11"]["contract"]))
    assert 'id="filter"' in html and 'id="hide-zero"' in html


def test_html_escapes_every_value() -> None:
    hostile = '"><script>alert(1)</script>&amp;'
    access = TableAccess(
        select=1,
        select_denied=False,
        insert=Privilege.denied,
        update=Privilege.denied,
        delete=Privilege.denied,
    )
    principal = PrincipalAccess(
        role=hostile,
        kind="agency",
        agency="<A&B>",
        insurer=None,
        restricted=False,
        provisioned=True,
        tables={"insurer": access},
    )
    matrix = Matrix(
        database="<db>", taken_at=dt.datetime.now(dt.UTC), tables=("insurer",), principals=[principal]
    )
    html = render_html(matrix)
    assert "<script>alert" not in html
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;" in html
    assert "&lt;A&amp;B&gt;" in html and "&lt;db&gt;" in html
    assert len(re.findall(r"<script>", html)) == 1  # only the page's own script


#: Appended to a copy of the page in the browser test: sorts, filters, and reports what it sees.
_DRIVER = """
<script>
(function () {
  var table = document.getElementById("matrix");
  var heads = table.tHead.rows[0].cells;
  var column = -1;
  for (var i = 0; i < heads.length; i++) { if (heads[i].textContent.trim() === "contract") { column = i; } }
  function visible() { return Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return !r.hidden; }); }
  var button = heads[column].querySelector("button");
  button.click();
  button.click();
  var out = {aria: heads[column].getAttribute("aria-sort"),
             sorted: visible().map(function (r) { return Number(r.cells[column].getAttribute("data-sort")); })};
  var filter = document.getElementById("filter");
  filter.value = "INSURER_";
  filter.dispatchEvent(new Event("input"));
  out.filtered = visible().map(function (r) { return r.cells[0].textContent; });
  out.counter = document.getElementById("shown").textContent;
  filter.value = "";
  filter.dispatchEvent(new Event("input"));
  var hide = document.getElementById("hide-zero");
  hide.checked = true;
  hide.dispatchEvent(new Event("change"));
  out.with_data = visible().length;
  var pre = document.createElement("pre");
  pre.id = "driver-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def _headless_dom(browser: str, page: Path) -> str:
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def test_html_sorts_and_filters_in_a_browser(world: World, tmp_path: Path) -> None:
    """Optional (skipped without Chromium): the page's own script runs, sorts and filters."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine")
    page = tmp_path / "matrix.html"
    assert run_matrix(world.db.superuser_url, "--html", str(page)).exit_code == 0
    total = len(PRINCIPALS)
    assert f"{total} of {total} principals shown" in _headless_dom(browser, page)
    driven = tmp_path / "driven.html"
    driven.write_text(page.read_text(encoding="utf-8").replace("</body>", _DRIVER + "</body>"), "utf-8")
    found = re.search(r'<pre id="driver-result">(.*?)</pre>', _headless_dom(browser, driven), re.S)
    assert found, "the driver script did not run"
    result = json.loads(unescape(found.group(1)))
    assert result["aria"] == "descending"
    assert result["sorted"] == sorted((len(EXPECTED[p]["contract"]) for p in PRINCIPALS), reverse=True)
    insurers = sorted(world.role(p) for p in PRINCIPALS if p.startswith("insurer_"))
    assert sorted(result["filtered"]) == insurers
    assert result["counter"] == f"{len(insurers)} of {total} principals shown"
    with_data = [
        p for p in PRINCIPALS if any(EXPECTED[p][t] for t in ALL_TABLES if t not in ("insurer", "principal"))
    ]
    assert result["with_data"] == len(with_data)


# ------------------------------------------------------------------------------------------------
# Fresh databases: failures, refusals, missing roles, scale
# ------------------------------------------------------------------------------------------------


def test_a_database_that_is_not_migrated_is_a_one_line_error(fresh_db: ScratchDatabase) -> None:
    result = run_matrix(fresh_db.superuser_url)
    assert result.exit_code == 1
    assert result.stderr == "agency-rls: this database is not migrated: run 'agency-rls migrate' first\n"


def test_refusals_and_missing_roles(fresh_db: ScratchDatabase, tmp_path: Path) -> None:
    """A revoked table is 'denied'; a refusal the catalog does not show is attributed per table;
    a principal row without a role is reported, not fatal; odd role names survive the HTML."""
    fresh_db.migrate()
    roles = ManagementRoles(fresh_db.prefix)
    try:
        with fresh_db.connect() as conn:
            conn.execute(
                "INSERT INTO public.insurer (code, name, line, kind) VALUES ('NL', 'Non-life', 'non_life', 'operator');"
                "INSERT INTO public.agency (code, name) VALUES ('A1', 'One')"
            )
            provision(conn)
            # A row the database's guard would refuse (not a canonical name), loaded with triggers off.
            with triggers_off(fresh_db) as loader:
                loader.execute(
                    "INSERT INTO public.principal (role_name, kind, agency_id)"
                    " SELECT %s, 'agency', id FROM public.agency WHERE code = 'A1'",
                    (fresh_db.role("x<b>&y"),),
                )
            conn.execute(
                "INSERT INTO public.principal (role_name, kind, agency_id)"
                " SELECT %s, 'agency', id FROM public.agency WHERE code = 'A1'",
                (fresh_db.role("never_provisioned"),),
            )
            # Catalog-visible refusal: no SELECT on notice_receipt for agencies.
            conn.execute(
                sql.SQL("REVOKE SELECT ON public.notice_receipt FROM {}").format(
                    sql.Identifier(roles.agency_group)
                )
            )
        # Refusal the table privileges do not show: insurers lose EXECUTE on a function their
        # contract policy calls, so the combined query fails and each table is tried alone. (Only
        # its owner, a role nobody is a member of, or the superuser can revoke it.)
        with fresh_db.superuser_connect() as conn:
            conn.execute(
                sql.SQL("REVOKE EXECUTE ON FUNCTION agency_rls.insurer_id() FROM {}").format(
                    sql.Identifier(roles.insurer_group)
                )
            )
        page = tmp_path / "m.html"
        found = matrix_json(fresh_db.superuser_url, "--html", str(page))
        odd = fresh_db.role("x<b>&y")
        assert set(found) == {
            fresh_db.role("agency_a1"),
            odd,
            fresh_db.role("insurer_nl"),
            fresh_db.role("never_provisioned"),
        }
        a1 = found[fresh_db.role("agency_a1")]["tables"]
        assert a1["notice_receipt"] == {
            "select": 0,
            "select_denied": True,
            "insert": "columns",
            "update": "denied",
            "delete": "denied",
        }
        assert (a1["agency"]["select"], a1["principal"]["select"], a1["insurer"]["select"]) == (1, 1, 1)
        nl = found[fresh_db.role("insurer_nl")]["tables"]
        assert nl["insurer"] == {**nl["insurer"], "select": 1, "select_denied": False}
        assert nl["contract"]["select_denied"] is True and nl["contract"]["select"] == 0
        missing = found[fresh_db.role("never_provisioned")]
        assert missing["provisioned"] is False
        assert all(c["select_denied"] and c["select"] == 0 for c in missing["tables"].values())
        html = page.read_text(encoding="utf-8")
        assert "x&lt;b&gt;&amp;y" in html and "x<b>" not in html
        assert "(no role)" in html
        text = run_matrix(fresh_db.superuser_url)
        assert text.exit_code == 0, text.stderr
        assert "denied" in text.stdout and "(no role)" in text.stdout
    finally:
        fresh_db.downgrade_base()


def test_two_thousand_principals(fresh_db: ScratchDatabase, tmp_path: Path) -> None:
    """Thousands of principals in one run (time is printed, not asserted)."""
    fresh_db.migrate()
    try:
        started = time.perf_counter()
        with fresh_db.connect() as conn:
            conn.execute(
                "INSERT INTO public.insurer (code, name, line, kind) VALUES ('NL', 'Non-life', 'non_life', 'operator');"
                "INSERT INTO public.agency (code, name)"
                " SELECT 'A' || lpad(g::text, 4, '0'), 'Agency ' || g FROM generate_series(1, 2000) AS g;"
                "INSERT INTO public.entrustment (agency_id, insurer_id, valid_from)"
                " SELECT a.id, i.id, now() - interval '1 day' FROM public.agency AS a, public.insurer AS i"
            )
            provision(conn)
            conn.execute("ANALYZE")  # as after any bulk load: the policies' plans need statistics
        provisioned = time.perf_counter()
        page = tmp_path / "big.html"
        result = run_matrix(fresh_db.superuser_url, "--format", "json", "--html", str(page))
        finished = time.perf_counter()
        assert result.exit_code == 0, result.stderr
        entries = json.loads(result.stdout)
        print(
            f"\nprovision: {provisioned - started:.1f} s; matrix of {len(entries)} principals:"
            f" {finished - provisioned:.1f} s"
        )
        assert len(entries) == 2001
        agencies = [e for e in entries if e["kind"] == "agency"]
        assert len(agencies) == 2000
        for entry in agencies:
            counts = {table: cell["select"] for table, cell in entry["tables"].items()}
            assert counts == {
                **dict.fromkeys(ALL_TABLES, 0),
                "insurer": 1,
                "agency": 1,
                "entrustment": 1,
                "principal": 1,
            }, entry["role"]
        insurer = next(e for e in entries if e["kind"] == "insurer")
        assert insurer["tables"]["agency"]["select"] == 2000
        assert insurer["tables"]["entrustment"]["select"] == 2000
        assert page.read_text(encoding="utf-8").count("<tr data-search=") == 2001
    finally:
        fresh_db.downgrade_base()
