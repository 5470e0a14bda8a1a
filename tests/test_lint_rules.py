"""``agency-rls lint``: every rule fires on its planted defect; the project's own database lints clean.

Each defect is planted in a transaction that is rolled back after the lint has run on the same
connection (the runner lints inside it, read-only), so one migrated, loaded and provisioned
database serves every test. The administrator plants: the superuser, or in DBA mode the
NOSUPERUSER database owner (what only a superuser can plant is marked ``needs_superuser``).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from agency_rls.rls_policies.names import ManagementRoles
from psycopg import sql

from agency_rls.lint import Finding, Level, all_rules, lint_connection
from agency_rls.lint.runner import LintError
from tests.support import World, create_database, sample_world_on


@pytest.fixture(scope="module")
def lint_world(server: str) -> Iterator[World]:
    """A world of its own: planting rolls back, but the clean check must not see other modules' changes."""
    with sample_world_on(server, "lint") as built:
        yield built


@pytest.fixture
def admin(lint_world: World) -> Iterator[psycopg.Connection]:
    with lint_world.admin() as conn:
        yield conn


def role_names(world: World) -> dict[str, str]:
    """Placeholders for plant templates: management roles and two principals, by their short names."""
    roles = ManagementRoles(world.prefix)
    return {
        "owner": roles.owner,
        "loader": roles.loader,
        "backend": roles.backend,
        "agency_group": roles.agency_group,
        "agency_writer_group": roles.agency_writer_group,
        "insurer_group": roles.insurer_group,
        "agency_w11": world.role("agency_w11"),
        "insurer_nl": world.role("insurer_nl"),
    }


def plant_and_lint(conn: psycopg.Connection, world: World, template: str, **options: object) -> list[Finding]:
    """Run ``template`` ({name}: a role as an identifier, {name_literal}: as a string), lint, roll back."""
    names = role_names(world)
    params: dict[str, sql.Composable] = {key: sql.Identifier(value) for key, value in names.items()}
    params |= {f"{key}_literal": sql.Literal(value) for key, value in names.items()}
    with conn.transaction(force_rollback=True):
        if template:
            conn.execute(sql.SQL(template).format(**params))  # type: ignore[arg-type]
        return lint_connection(conn, **options).findings  # type: ignore[arg-type]


def fired(findings: list[Finding], rule: str, obj: str) -> Finding:
    matches = [f for f in findings if f.rule == rule and f.object == obj]
    assert matches, f"{rule} did not fire on {obj}; findings: {[(f.rule, f.object) for f in findings]}"
    return matches[0]


def test_the_projects_database_lints_clean(admin: psycopg.Connection) -> None:
    """Migrated, loaded and provisioned: not one finding, at any level (as the superuser or the DBA)."""
    report = lint_connection(admin)
    assert [(f.rule, f.object, f.message) for f in report.findings] == []
    assert {r.id for r in report.rules} == {r.id for r in all_rules()}
    assert not report.failed


def test_lint_leaves_the_transaction_as_it_found_it(admin: psycopg.Connection) -> None:
    """Inside a caller's transaction the lint's read-only mode and search_path end with its savepoint."""
    with admin.transaction(force_rollback=True):
        admin.execute("SET LOCAL search_path = public")
        lint_connection(admin)
        assert admin.execute("SHOW transaction_read_only").fetchone() == ("off",)
        assert admin.execute("SHOW search_path").fetchone() == ("public",)
        admin.execute("CREATE TEMPORARY TABLE still_writable ()")


#: (rule, object, plant). Objects name roles as {placeholders} too.
PLANTS = [
    pytest.param(
        "rls_not_forced",
        "public.lint_claim",
        "CREATE TABLE public.lint_claim (id bigint, customer_id bigint, phone text)",
        id="personal-data-table-without-rls",
    ),
    pytest.param(
        "rls_not_forced",
        "public.lint_claim",
        "CREATE TABLE public.lint_claim (id bigint); GRANT SELECT ON public.lint_claim TO {agency_group}",
        id="granted-table-without-rls",
    ),
    pytest.param(
        "rls_not_forced",
        "public.customer",
        "ALTER TABLE public.customer NO FORCE ROW LEVEL SECURITY",
        id="rls-not-forced",
    ),
    pytest.param(
        "rls_not_forced",
        "public.insurer",
        "GRANT UPDATE (name) ON public.insurer TO {agency_writer_group}",
        id="public-by-design-table-made-writable",
    ),
    pytest.param(
        "policy_without_rls",
        "public.agency",
        "ALTER TABLE public.agency DISABLE ROW LEVEL SECURITY",
        id="policies-with-rls-off",
    ),
    pytest.param(
        "rls_without_policy",
        "public.lint_claim",
        "CREATE TABLE public.lint_claim (id bigint);"
        " ALTER TABLE public.lint_claim ENABLE ROW LEVEL SECURITY;"
        " ALTER TABLE public.lint_claim FORCE ROW LEVEL SECURITY;"
        " GRANT SELECT ON public.lint_claim TO {agency_group}",
        id="rls-on-no-policy",
    ),
    pytest.param(
        "view_not_security_invoker",
        "public.lint_contacts",
        "CREATE VIEW public.lint_base WITH (security_invoker = true) AS SELECT full_name, phone FROM public.customer;"
        " CREATE VIEW public.lint_contacts AS SELECT * FROM public.lint_base;"
        " GRANT SELECT ON public.lint_contacts TO {insurer_group}",
        id="definer-view-over-a-view",
    ),
    pytest.param(
        "unprotected_derived_relation",
        "public.lint_totals",
        "CREATE MATERIALIZED VIEW public.lint_totals AS SELECT insurer_id, count(*) FROM public.contract GROUP BY 1;"
        " GRANT SELECT ON public.lint_totals TO {agency_group}",
        id="materialized-view",
    ),
    pytest.param(
        "unprotected_derived_relation",
        "public.lint_notice_2026",
        "CREATE TABLE public.lint_notice_2026 () INHERITS (public.notice);"
        " GRANT SELECT ON public.lint_notice_2026 TO {agency_group}",
        id="child-table",
    ),
    pytest.param(
        "unprotected_derived_relation",
        "public.lint_notice_part",
        "CREATE TABLE public.lint_notice_parted (LIKE public.notice) PARTITION BY LIST (insurer_id);"
        " ALTER TABLE public.lint_notice_parted ENABLE ROW LEVEL SECURITY;"
        " ALTER TABLE public.lint_notice_parted FORCE ROW LEVEL SECURITY;"
        " CREATE TABLE public.lint_notice_part PARTITION OF public.lint_notice_parted FOR VALUES IN (1);"
        " ALTER TABLE public.lint_notice_part ENABLE ROW LEVEL SECURITY;"
        " ALTER TABLE public.lint_notice_part FORCE ROW LEVEL SECURITY;"
        " GRANT SELECT ON public.lint_notice_part TO {agency_group}",
        id="partition-without-policies",
    ),
    pytest.param(
        "definer_search_path",
        "function public.lint_f()",
        "CREATE FUNCTION public.lint_f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';"
        " REVOKE ALL ON FUNCTION public.lint_f() FROM PUBLIC",
        id="definer-without-search-path",
    ),
    pytest.param(
        "definer_search_path",
        "function public.lint_f()",
        "CREATE FUNCTION public.lint_f() RETURNS int LANGUAGE sql SECURITY DEFINER"
        " SET search_path = pg_temp, pg_catalog AS 'SELECT 1';"
        " REVOKE ALL ON FUNCTION public.lint_f() FROM PUBLIC",
        id="definer-with-pg-temp-first",
    ),
    pytest.param(
        "definer_public_execute",
        "function public.lint_f()",
        "CREATE FUNCTION public.lint_f() RETURNS int LANGUAGE sql SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS 'SELECT 1'",
        id="definer-executable-by-public",
    ),
    pytest.param(
        "definer_identity_argument",
        "function public.lint_visible(bigint)",
        "CREATE FUNCTION public.lint_visible(me bigint) RETURNS bigint[] LANGUAGE sql STABLE SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS 'SELECT ARRAY[me]';"
        " REVOKE ALL ON FUNCTION public.lint_visible(bigint) FROM PUBLIC;"
        " GRANT EXECUTE ON FUNCTION public.lint_visible(bigint) TO {agency_group}",
        id="definer-with-argument-executable-by-principals",
    ),
    pytest.param(
        "definer_identity_argument",
        "function public.lint_visible(bigint)",
        "CREATE FUNCTION public.lint_visible(me bigint) RETURNS bigint[] LANGUAGE sql STABLE SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS 'SELECT ARRAY[me]';"
        " REVOKE ALL ON FUNCTION public.lint_visible(bigint) FROM PUBLIC;"
        " CREATE POLICY lint_by_argument ON public.agency FOR SELECT TO {agency_group}"
        " USING (id = ANY ((SELECT public.lint_visible(42))::bigint[]))",
        id="definer-with-argument-called-by-a-policy",
    ),
    pytest.param(
        "identity_from_setting",
        "policy lint_spoof ON public.agency",
        "CREATE POLICY lint_spoof ON public.agency FOR SELECT TO {agency_group}"
        " USING (id = (SELECT current_setting('app.agency_id')::bigint))",
        id="policy-reads-custom-setting",
    ),
    pytest.param(
        "identity_from_setting",
        "function agency_rls.lint_me()",
        "CREATE FUNCTION agency_rls.lint_me() RETURNS bigint LANGUAGE plpgsql STABLE"
        " SET search_path = pg_catalog, pg_temp"
        " AS $$BEGIN RETURN pg_catalog.current_setting('app.agency_id', true)::bigint; END$$",
        id="scope-function-reads-custom-setting",
    ),
    pytest.param(
        "role_privileged",
        "role {agency_w11}",
        "GRANT {owner} TO {agency_w11}",
        id="principal-member-of-the-owner",
    ),
    pytest.param(
        "role_privileged",
        "role {agency_group}",
        "GRANT {loader} TO {agency_group}",
        id="group-member-of-the-loader",
    ),
    pytest.param(
        "principal_dangerous_grant",
        "public.contract",
        "GRANT TRUNCATE ON public.contract TO {agency_group}",
        id="truncate",
    ),
    pytest.param(
        "principal_dangerous_grant",
        "public.contract",
        "GRANT REFERENCES (id) ON public.contract TO {insurer_group}",
        id="column-references",
    ),
    pytest.param(
        "principal_dangerous_grant",
        "public.notice",
        "GRANT TRIGGER ON public.notice TO PUBLIC",
        id="trigger-to-public",
    ),
    pytest.param(
        "principal_dangerous_grant",
        "schema public",
        "GRANT CREATE ON SCHEMA public TO {agency_group}",
        id="schema-create",
    ),
    pytest.param(
        "principal_owned_objects",
        "role {agency_w11}",
        "GRANT {agency_w11} TO CURRENT_USER; GRANT CREATE ON SCHEMA public TO {agency_w11};"
        " CREATE TABLE public.lint_owned (); ALTER TABLE public.lint_owned OWNER TO {agency_w11};"
        " REVOKE CREATE ON SCHEMA public FROM {agency_w11}",
        id="owned-table",
    ),
    pytest.param(
        "principal_owned_objects",
        "role {agency_w11}",
        "GRANT {agency_w11} TO CURRENT_USER; SET ROLE {agency_w11}; SELECT pg_catalog.lo_create(0); RESET ROLE",
        id="large-object",
    ),
    pytest.param(
        "principal_owned_objects",
        "role {agency_w11}",
        "GRANT {agency_w11} TO CURRENT_USER; SET ROLE {agency_w11};"
        " ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC; RESET ROLE",
        id="default-privileges",
    ),
    pytest.param(
        "principal_owned_objects",
        "role {agency_w11}",
        "ALTER ROLE {agency_w11} SET search_path = lint_evil, public",
        id="role-settings",
    ),
    pytest.param(
        "always_true_policy",
        "policy lint_open ON public.agency",
        "CREATE POLICY lint_open ON public.agency FOR SELECT TO {agency_group} USING (true)",
        id="using-true",
    ),
    pytest.param(
        "always_true_policy",
        "policy lint_open ON public.supervision",
        "CREATE POLICY lint_open ON public.supervision FOR SELECT TO PUBLIC"
        " USING ((SELECT agency_rls.unrestricted_agency_id()) IS NOT NULL)",
        id="reads-no-column",
    ),
    pytest.param(
        "admits_missing_identity",
        "policy lint_fallback ON public.contract",
        "CREATE POLICY lint_fallback ON public.contract FOR SELECT TO {insurer_group}"
        " USING (insurer_id = coalesce((SELECT agency_rls.insurer_id()), insurer_id))",
        id="coalesce-fallback",
    ),
    pytest.param(
        "admits_missing_identity",
        "policy lint_or_null ON public.notice",
        "CREATE POLICY lint_or_null ON public.notice FOR SELECT TO {insurer_group}"
        " USING ((SELECT agency_rls.insurer_id()) IS NULL OR insurer_id = (SELECT agency_rls.insurer_id()))",
        id="is-null-alternative",
    ),
    pytest.param(
        "admits_missing_identity",
        "policy lint_unplanned ON public.notice",
        "CREATE POLICY lint_unplanned ON public.notice FOR SELECT TO {insurer_group}"
        " USING (agency_rls.planned_insurer_id() IS NULL AND insurer_id > 0)",
        id="unplanned-arm-not-compared-with-the-identity",
    ),
    pytest.param(
        "admits_missing_identity",
        "policy lint_unplanned_or ON public.notice",
        "CREATE POLICY lint_unplanned_or ON public.notice FOR SELECT TO {insurer_group}"
        " USING (agency_rls.planned_insurer_id() IS NULL"
        " AND (insurer_id = (SELECT agency_rls.insurer_id()) OR insurer_id > 0))",
        id="unplanned-arm-compared-or-anything",
    ),
    pytest.param(
        "unwrapped_scope_call",
        "policy lint_per_row ON public.contract",
        "CREATE POLICY lint_per_row ON public.contract FOR SELECT TO {insurer_group}"
        " USING (insurer_id = agency_rls.insurer_id())",
        id="per-row-call",
    ),
    pytest.param(
        "permissive_without_guard",
        "public.contract_handler",
        "DROP POLICY contract_handler_entrustment_guard ON public.contract_handler;"
        " CREATE POLICY lint_second ON public.contract_handler FOR SELECT TO {agency_group}"
        " USING (agency_id = (SELECT agency_rls.unrestricted_agency_id()))",
        id="guard-dropped-second-permissive",
    ),
    pytest.param(
        "principal_row_not_principal",
        "principal '{agency_group}'",
        "ALTER TABLE public.principal DISABLE TRIGGER USER;"
        " INSERT INTO public.principal (role_name, kind, agency_id)"
        " SELECT {agency_group_literal}, 'agency', min(id) FROM public.agency",
        id="row-names-a-group-role",
    ),
    pytest.param(
        "prefix_roles_elsewhere",
        "role {agency_w11}",
        "COMMENT ON ROLE {agency_w11} IS 'agency-rls:principal database=lint_elsewhere'",
        id="marker-names-another-database",
    ),
]


@pytest.mark.parametrize(("rule", "obj", "plant"), PLANTS)
def test_each_rule_fires_on_its_planted_defect(
    admin: psycopg.Connection, lint_world: World, rule: str, obj: str, plant: str
) -> None:
    findings = plant_and_lint(admin, lint_world, plant)
    finding = fired(findings, rule, obj.format(**role_names(lint_world)))
    assert finding.message and finding.remedy


def test_a_fallback_to_the_statements_identity_is_not_a_missing_identity(
    admin: psycopg.Connection, lint_world: World
) -> None:
    """Revision 0008's shape: the arm a NULL-folded insurer opens compares the row with the statement's
    identity (NULL for everyone else), so it admits nothing when identity is missing."""
    findings = plant_and_lint(
        admin,
        lint_world,
        "CREATE POLICY lint_fallback_ok ON public.notice FOR SELECT TO {insurer_group}"
        " USING (agency_rls.planned_insurer_id() IS NULL AND insurer_id = (SELECT agency_rls.insurer_id()));"
        " CREATE POLICY lint_fallback_ok ON public.customer FOR SELECT TO {insurer_group}"
        " USING (agency_rls.planned_insurer_id() IS NULL"
        " AND party_insurer_ids @> ARRAY[(SELECT agency_rls.insurer_id())])",
    )
    assert [f.object for f in findings if f.rule == "admits_missing_identity"] == []


def test_a_role_setting_is_a_warning_and_an_owned_object_an_error(
    admin: psycopg.Connection, lint_world: World
) -> None:
    findings = plant_and_lint(
        admin,
        lint_world,
        "ALTER ROLE {agency_w11} SET search_path = lint_evil, public; GRANT {agency_w11} TO CURRENT_USER;"
        " GRANT CREATE ON SCHEMA public TO {agency_w11}; CREATE TABLE public.lint_owned ();"
        " ALTER TABLE public.lint_owned OWNER TO {agency_w11}; REVOKE CREATE ON SCHEMA public FROM {agency_w11}",
    )
    owned = [f for f in findings if f.rule == "principal_owned_objects"]
    assert sorted((f.level, f.message.split(" ", 2)[2]) for f in owned) == [
        (Level.error, "owns table public.lint_owned"),
        (Level.warning, "has role settings search_path=lint_evil, public (every database)"),
    ]


def test_a_missing_principal_role_is_a_warning(admin: psycopg.Connection, lint_world: World) -> None:
    findings = plant_and_lint(
        admin,
        lint_world,
        "INSERT INTO public.principal (role_name, kind, agency_id)"
        f" SELECT '{lint_world.prefix}agency_not_yet', 'agency', min(id) FROM public.agency",
    )
    assert fired(
        findings, "principal_row_not_principal", f"principal '{lint_world.prefix}agency_not_yet'"
    ).level is (Level.warning)


@pytest.mark.needs_superuser("creates a BYPASSRLS role attribute")
def test_a_bypassrls_backend_is_reported(admin: psycopg.Connection, lint_world: World) -> None:
    findings = plant_and_lint(admin, lint_world, "ALTER ROLE {backend} BYPASSRLS")
    assert (
        "BYPASSRLS" in fired(findings, "role_privileged", f"role {role_names(lint_world)['backend']}").message
    )


@pytest.mark.needs_superuser("creating a foreign data wrapper needs SUPERUSER")
def test_a_foreign_table_readable_by_principals_is_reported(
    admin: psycopg.Connection, lint_world: World
) -> None:
    findings = plant_and_lint(
        admin,
        lint_world,
        "CREATE FOREIGN DATA WRAPPER lint_fdw; CREATE SERVER lint_server FOREIGN DATA WRAPPER lint_fdw;"
        " CREATE FOREIGN TABLE public.lint_remote (full_name text) SERVER lint_server;"
        " GRANT SELECT ON public.lint_remote TO {agency_group}",
    )
    fired(findings, "unprotected_derived_relation", "public.lint_remote")


def test_a_role_of_the_prefix_granted_in_another_database_is_reported(
    server: str, admin: psycopg.Connection, lint_world: World
) -> None:
    """Roles are cluster-wide: another database granting to this database's principal is caught here."""
    principal = lint_world.role("agency_w11")
    other = create_database(server, "lintother")
    try:
        with other.connect() as conn:
            conn.execute("CREATE TABLE public.shared ()")
            conn.execute(sql.SQL("GRANT SELECT ON public.shared TO {}").format(sql.Identifier(principal)))
        finding = fired(lint_connection(admin).findings, "prefix_roles_elsewhere", f"role {principal}")
        assert f"granted privileges on 1 object(s) in database {other.name}" in finding.message
    finally:
        other.drop()
    assert not [f for f in lint_connection(admin).findings if f.rule == "prefix_roles_elsewhere"]


@pytest.mark.parametrize(
    ("version_num", "missing"),
    [
        (150008, "CVE-2024-10976 (15.9), CVE-2025-8713 (15.14)"),
        (150013, "CVE-2025-8713 (15.14)"),
        (
            140003,
            "CVE-2023-2455 (14.8), CVE-2024-4317 (14.12), CVE-2024-10976 (14.14), CVE-2025-8713 (14.19)",
        ),
        (170005, "CVE-2025-8713 (17.6)"),
        (120022, "out of support"),
        (150014, None),
        (160010, None),
        (170006, None),
        (180000, None),
    ],
)
def test_server_minor_against_the_cve_fixes(
    admin: psycopg.Connection, lint_world: World, version_num: int, missing: str | None
) -> None:
    findings = [
        f
        for f in plant_and_lint(admin, lint_world, "", server_version_num=version_num)
        if f.rule == "server_cve_minor"
    ]
    if missing is None:
        assert findings == []
    else:
        assert [f.object for f in findings] == ["server"]
        assert missing in findings[0].message


def test_an_unprivileged_linter_is_told_what_it_could_not_check(lint_world: World) -> None:
    """The backend login reads the catalogs but may not read the principal rows: one warning says so."""
    report = lint_connection(lint_world.backend)
    assert [(f.rule, f.level, f.object) for f in report.findings] == [
        ("principal_row_not_principal", Level.warning, "lint")
    ]
    assert "permission denied" in report.findings[0].message
    assert not report.failed


def test_a_linter_that_sees_only_some_principal_rows_says_so(
    admin: psycopg.Connection, lint_world: World
) -> None:
    """A member of the tables' owner may SELECT principal rows, but row level security is forced: it sees none."""
    reader = sql.Identifier(lint_world.role("lint_reader"))
    with admin.transaction(force_rollback=True):
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(reader))
        admin.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(role_names(lint_world)["owner"]), reader)
        )
        admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(reader))
        admin.execute(sql.SQL("SET ROLE {}").format(reader))
        findings = lint_connection(admin).findings
    assert [(f.rule, f.level, f.object) for f in findings] == [
        ("principal_row_not_principal", Level.warning, "public.principal")
    ]


def test_a_database_without_a_stored_prefix_needs_one(fresh_db: object) -> None:
    with fresh_db.connect() as conn:  # type: ignore[attr-defined]
        with pytest.raises(LintError, match="give --role-prefix"):
            lint_connection(conn)
        assert lint_connection(conn, role_prefix="lint_").role_prefix == "lint_"


def test_a_role_prefix_that_differs_from_the_stored_one_is_refused(admin: psycopg.Connection) -> None:
    with pytest.raises(LintError, match="differs from the prefix stored"):
        lint_connection(admin, role_prefix="someone_else_")


def test_every_rule_has_a_doc_with_a_bad_and_a_good_example() -> None:
    rules = all_rules()
    assert len(rules) >= 19
    for rule in rules:
        assert "Bad::" in rule.doc and "Good::" in rule.doc, rule.id
        assert rule.doc.index("Bad::") < rule.doc.index("Good::"), rule.id
