"""Issue 10, item 1: revisions that write themselves (``agency-rls revision``, ``alembic revision``).

A rule is changed in a scratch copy of ``rls_policies/sql`` (a policy, a function in place, a function
whose argument names change with what depends on it, grants); ``agency-rls revision`` writes revision
the next revision (0007 while 0006 is head) into a scratch copy of ``migrations/versions``; on a real
database (as the mode's administrator, the NOSUPERUSER DBA included) it upgrades from head to the catalog
of a database built from the changed definition, and downgrades back to the catalog of head: the drift
test's comparison at both ends.
The scratch databases the generator itself uses live on the suite's server.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
from agency_rls.migrations import runner as migrations_runner
from agency_rls.migrations.autogen import RevisionRefused
from agency_rls.migrations.definition_catalog import DEFINITION_QUERIES
from agency_rls.migrations.runner import MIGRATIONS_DIR, alembic_config
from agency_rls.rls_policies.definition import (
    SQL_DIR,
    TEARDOWN_FILE,
    read_template,
    render,
    security_template,
)
from agency_rls.rls_policies.names import ManagementRoles
from agency_rls.scripts.cli import app
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from tests.support import ScratchDatabase, create_database
from tests.test_definition_drift import definition_catalog

VERSIONS = MIGRATIONS_DIR / "versions"
REPO = Path(__file__).parent.parent
#: The shipped head, and the id a new revision gets (four digits, one after the other).
HEAD = migrations_runner.head_revision()
NEW = f"{int(HEAD) + 1:04d}"

#: The recorded SQL of the released revisions: it never changes (sha256 of each file's bytes).
RECORDED_SQL_SHA256 = {
    "0001_upgrade.sql": "c2ca72310ebd21110e183b9a01c81e9d1674022234de058af8d726352db1ea95",
    "0001_downgrade.sql": "c485592ab3aa964f135b81cbc862259c0c4254718a4b459def0d4539b8cc1d0c",
    "0002_upgrade.sql": "88fcb59b64c2ecd3d55741e9ef967855c2a39b8dd90353570a488f900994372f",
    "0002_downgrade.sql": "96e091984f5541f1451a2753374ffb344fc4a5555a475c97dba7fb55777da4b9",
    "0003_upgrade.sql": "f89f860ed7fc02354655de0d5b7286adf604b9d3bd680460b2707e3ea3a0b22c",
    "0003_downgrade.sql": "fdf6a19ab888668e9272459a43640ab01411ce4f5cbcab9ed3e485637785cdd9",
    "0004_upgrade.sql": "7a6753e948e3bcd2a8f3b694fe100eb83b46df953fd32d8bcea15ca479985c3a",
    "0004_downgrade.sql": "d3f51b1ebdda98c545b0ce0c01d5aaff2b9de277d8835b7b5b7d46f968457fd2",
    "0005_upgrade.sql": "c4e804221d97cba639c7401b139a2e68ef850c30aafaa87107b74be863b2f8cf",
    "0005_downgrade.sql": "01ef7258745a8c491a45c15f5664cdc431d0a1c52e968edc88ad633295e5819c",
    "0006_upgrade.sql": "c71cbf5449eb79952eb0c57eeb0ab4876c6293bfb157b2c45b79691ada6cb08b",
    "0006_downgrade.sql": "c98889a11130e767ec0be466a5f00e8cc49ce08dd74f62fd0b0b264fa729f6b3",
    "0007_upgrade.sql": "10886d5b30dc3d3c5c6bdf141073d5c55d38db9d42ab666e533952f4ff265e74",
    "0007_downgrade.sql": "e1af2dc57db52522f8287a29b5924278bc1703b7a78f7f14502e78e69e813805",
    "0008_upgrade.sql": "f8c533fca04af624add14e2bb80e479dd9ba03a211471f541ba8a323e7f79884",
    "0008_downgrade.sql": "ae4da50416cf9a71ac2911b61c8f461f717f4858c882c82aa51859c8cfcb8c8b",
    "0009_upgrade.sql": "0604a905fa62b03158cefc920c2469a82f0136082856afe208a0c9539f3af71b",
    "0009_downgrade.sql": "453f272bff0b05d89eba4662042455205a06a1819f0cee23851aaab76631075b",
}


def test_every_revision_records_its_sql_under_one_naming_scheme() -> None:
    """<rev>_upgrade.sql and <rev>_downgrade.sql beside each revision, loaded by it, and nothing else."""
    script = ScriptDirectory.from_config(alembic_config(None))
    expected = set()
    for revision in script.walk_revisions():
        source = Path(revision.path).read_text(encoding="utf-8")
        for step in ("upgrade", "downgrade"):
            name = f"{revision.revision}_{step}.sql"
            assert f'run_recorded(__file__, "{name}")' in source, (revision.revision, name)
            expected.add(name)
    assert {path.name for path in VERSIONS.glob("*.sql")} == expected


def test_released_recorded_sql_never_changes() -> None:
    found = {name: hashlib.sha256((VERSIONS / name).read_bytes()).hexdigest() for name in RECORDED_SQL_SHA256}
    assert found == RECORDED_SQL_SHA256


def scratch_copies(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shipped revisions and one of the definition, to change and write into."""
    versions, definition = tmp_path / "versions", tmp_path / "sql"
    shutil.copytree(VERSIONS, versions, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SQL_DIR, definition)
    return versions, definition


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def change_the_rules(definition: Path) -> None:
    """A policy, a function in place, a function whose arguments are renamed (a SQL function that
    depends on it must go and come back), a column grant taken away and a function grant added."""
    edit(
        definition / "policies.sql",
        "USING (agency_id = (SELECT agency_rls.unrestricted_agency_id()));\n"
        "CREATE POLICY notice_receipt_read_restricted",
        "USING (agency_id = (SELECT agency_rls.unrestricted_agency_id()) AND read_at IS NOT NULL);\n"
        "CREATE POLICY notice_receipt_read_restricted",
    )
    edit(  # insurer_id(), not planned_insurer_id() (the same body)
        definition / "scope_functions.sql",
        "CREATE FUNCTION agency_rls.insurer_id() RETURNS bigint\n"
        "    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED\n"
        "    SET search_path = pg_catalog, pg_temp\n"
        "AS $$\n"
        "BEGIN\n"
        "    RETURN (\n"
        "        SELECT me.insurer_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'insurer'",
        "CREATE FUNCTION agency_rls.insurer_id() RETURNS bigint\n"
        "    LANGUAGE plpgsql STABLE SECURITY DEFINER PARALLEL RESTRICTED\n"
        "    SET search_path = pg_catalog, pg_temp\n"
        "AS $$\n"
        "BEGIN\n"
        "    RETURN (\n"
        "        SELECT me.insurer_id FROM agency_rls.acting_principal() AS me WHERE me.kind = 'insurer' LIMIT 1",
    )
    edit(
        definition / "scope_columns.sql",
        "agency_rls.validity(valid_from timestamptz, valid_to timestamptz) RETURNS tstzrange\n"
        "    LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
        "    RETURN CASE WHEN valid_to <= valid_from THEN 'empty'::tstzrange\n"
        "                ELSE pg_catalog.tstzrange(valid_from, valid_to, '[)') END;",
        "agency_rls.validity(starts timestamptz, ends timestamptz) RETURNS tstzrange\n"
        "    LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
        "    RETURN CASE WHEN ends <= starts THEN 'empty'::tstzrange\n"
        "                ELSE pg_catalog.tstzrange(starts, ends, '[)') END;",
    )
    edit(
        definition / "grants.sql",
        "GRANT UPDATE (address, phone, fax, email) ON public.customer TO {{agency_writer_group}};",
        "GRANT UPDATE (address, phone, email) ON public.customer TO {{agency_writer_group}};",
    )
    edit(
        definition / "grants.sql",
        "    agency_rls.visible_entrustment_ids()\n    TO",
        "    agency_rls.visible_entrustment_ids(),\n    agency_rls.supervised_agency_ids()\n    TO",
    )


def build_from_definition(db: ScratchDatabase, definition: Path | None) -> None:
    """Revision 0001's tables, then the definition in ``definition`` applied directly (as the drift test)."""
    migrations_runner.upgrade(db.url, "0001", role_prefix=db.prefix)
    with db.connect() as conn:
        conn.execute(render(security_template(definition), ManagementRoles(db.prefix)))


def remove_definition(db: ScratchDatabase, definition: Path | None) -> None:
    with db.connect() as conn:
        conn.execute(render(read_template(TEARDOWN_FILE, definition), ManagementRoles(db.prefix)))
    migrations_runner.downgrade(db.url, "base")


def policy_text(db: ScratchDatabase) -> str:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT qual FROM pg_policies WHERE tablename = 'notice_receipt' AND policyname = 'notice_receipt_read_own'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_changed_rules_give_a_revision_that_upgrades_and_downgrades_to_each_definition(
    server: str, tmp_path: Path
) -> None:
    versions, definition = scratch_copies(tmp_path)
    change_the_rules(definition)
    written = migrations_runner.revision(
        "Receipts once read", definition_dir=definition, versions_dir=versions, scratch_server=server
    )
    assert written == versions / f"{NEW}_receipts_once_read.py"
    upgrade_sql = (versions / f"{NEW}_upgrade.sql").read_text(encoding="utf-8")
    downgrade_sql = (versions / f"{NEW}_downgrade.sql").read_text(encoding="utf-8")
    assert "DROP POLICY notice_receipt_read_own ON public.notice_receipt;" in upgrade_sql
    assert "CREATE OR REPLACE FUNCTION agency_rls.insurer_id()" in upgrade_sql
    assert (
        "DROP FUNCTION agency_rls.validity(timestamp with time zone,timestamp with time zone);" in upgrade_sql
    )
    assert "REVOKE UPDATE (fax) ON TABLE public.customer FROM {{agency_writer_group}};" in upgrade_sql
    assert "GRANT UPDATE (fax) ON TABLE public.customer TO {{agency_writer_group}};" in downgrade_sql
    assert "GRANT EXECUTE ON FUNCTION agency_rls.supervised_agency_ids() TO {{agency_group}};" in upgrade_sql
    script = ScriptDirectory.from_config(alembic_config(None, versions_dir=versions))
    assert script.get_current_head() == NEW and script.get_revision(NEW).down_revision == HEAD

    upgraded, downgraded = round_trip(server, versions, definition)
    assert "read_at IS NOT NULL" in upgraded and "read_at" not in downgraded


def round_trip(server: str, versions: Path, definition: Path) -> tuple[str, str]:
    """A database at HEAD (installed as the mode's administrator), upgraded to NEW of ``versions`` and
    down again; at each end its catalog equals that of a database built from that end's definition.
    Returns the receipts policy's condition at NEW and back at HEAD."""
    db = create_database(server, "autogen")
    changed = create_database(server, "autogen_changed")
    try:
        db.migrate()  # the package's definition: revision HEAD
        at_head = definition_catalog(db)
        build_from_definition(changed, definition)
        try:
            migrations_runner.upgrade(db.url, "head", versions_dir=versions)
            assert migrations_runner.migrated_revision(db.url, versions_dir=versions) == NEW
            upgraded = policy_text(db)
            after, expected = definition_catalog(db), definition_catalog(changed)
            for part in DEFINITION_QUERIES:
                assert after[part] == expected[part], part

            migrations_runner.downgrade(db.url, HEAD, versions_dir=versions)
            assert migrations_runner.migrated_revision(db.url) == HEAD
            downgraded = policy_text(db)
            back = definition_catalog(db)
            for part in DEFINITION_QUERIES:
                assert back[part] == at_head[part], part
        finally:
            remove_definition(changed, definition)
            db.downgrade_base()
        assert db.leftover_roles() == [] and changed.leftover_roles() == []
    finally:
        changed.drop()
        db.drop()
    return upgraded, downgraded


def test_columns_indexes_triggers_row_security_and_comments_round_trip(server: str, tmp_path: Path) -> None:
    """A column added, an index changed and one added, a function and trigger added (with a comment),
    row level security switched on for a table with a new policy."""
    versions, definition = scratch_copies(tmp_path)
    edit(
        definition / "scope_columns.sql",
        "CREATE INDEX notice_addressee_created_idx ON public.notice (addressee_agency_id, created_at, id);",
        "CREATE INDEX notice_addressee_created_idx ON public.notice (addressee_agency_id, created_at DESC, id);\n"
        "CREATE INDEX contract_insurer_idx ON public.contract (insurer_id);\n"
        "ALTER TABLE public.notice ADD COLUMN pinned boolean NOT NULL DEFAULT false;\n"
        "CREATE FUNCTION agency_rls.notice_unpinned() RETURNS trigger\n"
        "    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp\n"
        "AS $$\nBEGIN\n    NEW.pinned := false;\n    RETURN NEW;\nEND\n$$;\n"
        "COMMENT ON FUNCTION agency_rls.notice_unpinned() IS 'agency-rls: loaders never pin';\n"
        "REVOKE ALL ON FUNCTION agency_rls.notice_unpinned() FROM PUBLIC;\n"
        "ALTER FUNCTION agency_rls.notice_unpinned() OWNER TO {{owner}};\n"
        "CREATE TRIGGER notice_unpinned BEFORE INSERT ON public.notice\n"
        "    FOR EACH ROW EXECUTE FUNCTION agency_rls.notice_unpinned();\n"
        "ALTER TABLE public.insurer ENABLE ROW LEVEL SECURITY;\n"
        "CREATE POLICY insurer_read ON public.insurer AS PERMISSIVE FOR SELECT TO PUBLIC USING (true);",
    )
    edit(
        definition / "teardown.sql",
        "DROP INDEX public.notice_addressee_created_idx;",
        "DROP INDEX public.notice_addressee_created_idx;\n"
        "DROP INDEX IF EXISTS public.contract_insurer_idx;\n"
        "DROP POLICY IF EXISTS insurer_read ON public.insurer;\n"
        "ALTER TABLE public.insurer DISABLE ROW LEVEL SECURITY;\n"
        "DROP TRIGGER IF EXISTS notice_unpinned ON public.notice;\n"
        "ALTER TABLE public.notice DROP COLUMN IF EXISTS pinned;",
    )
    migrations_runner.revision(
        "Pinned notices", definition_dir=definition, versions_dir=versions, scratch_server=server
    )
    upgrade_sql = (versions / f"{NEW}_upgrade.sql").read_text(encoding="utf-8")
    downgrade_sql = (versions / f"{NEW}_downgrade.sql").read_text(encoding="utf-8")
    assert "ALTER TABLE public.notice ADD COLUMN pinned boolean NOT NULL DEFAULT false;" in upgrade_sql
    assert "ALTER TABLE public.notice DROP COLUMN pinned;" in downgrade_sql
    assert "DROP INDEX public.notice_addressee_created_idx;" in upgrade_sql
    assert "CREATE INDEX contract_insurer_idx ON public.contract USING btree (insurer_id);" in upgrade_sql
    assert "ALTER TABLE public.insurer ENABLE ROW LEVEL SECURITY;" in upgrade_sql
    assert "ALTER TABLE public.insurer DISABLE ROW LEVEL SECURITY;" in downgrade_sql
    assert (
        "COMMENT ON FUNCTION agency_rls.notice_unpinned() IS 'agency-rls: loaders never pin';" in upgrade_sql
    )
    assert "DROP TRIGGER notice_unpinned ON public.notice;" in downgrade_sql
    assert "DROP FUNCTION agency_rls.notice_unpinned();" in downgrade_sql
    round_trip(server, versions, definition)


def test_no_change_says_so_and_writes_nothing(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    versions, definition = scratch_copies(tmp_path)
    before = sorted(p.name for p in versions.iterdir())
    assert (
        migrations_runner.revision(
            "nothing", definition_dir=definition, versions_dir=versions, scratch_server=server
        )
        is None
    )
    assert sorted(p.name for p in versions.iterdir()) == before
    assert capsys.readouterr().err.strip() == (
        f"agency-rls: no change: the definition matches the one recorded at revision {HEAD}; nothing written"
    )


def test_a_change_autogenerate_does_not_write_is_refused_and_nothing_is_written(
    server: str, tmp_path: Path
) -> None:
    versions, definition = scratch_copies(tmp_path)
    edit(
        definition / "roles.sql",
        "[{{loader_name}},        'NOLOGIN NOINHERIT']",
        "[{{loader_name}}, 'NOLOGIN INHERIT']",
    )
    before = sorted(p.name for p in versions.iterdir())
    with pytest.raises(RevisionRefused) as refused:
        migrations_runner.revision(
            "loader inherits", definition_dir=definition, versions_dir=versions, scratch_server=server
        )
    assert str(refused.value.code).startswith(
        "agency-rls: the definition changes management roles or their attributes, which autogenerate does not write"
    )
    assert sorted(p.name for p in versions.iterdir()) == before


def test_a_definition_that_does_not_apply_is_named_in_one_line(server: str, tmp_path: Path) -> None:
    versions, definition = scratch_copies(tmp_path)
    edit(
        definition / "grants.sql",
        "GRANT SELECT ON public.insurer TO PUBLIC;",
        "GRANT SELECT ON public.nowhere TO PUBLIC;",
    )
    with pytest.raises(RevisionRefused) as refused:
        migrations_runner.revision(
            "broken", definition_dir=definition, versions_dir=versions, scratch_server=server
        )
    assert str(refused.value.code) == (
        f'agency-rls: the definition in {definition} does not apply: relation "public.nowhere" does not exist'
    )


def test_plain_alembic_revision_writes_the_sql_files_its_module_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the repository's alembic.ini: empty templates (script.py.mako writes them); --sql renders them."""
    versions, _definition = scratch_copies(tmp_path)
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("version_locations", str(versions))
    written = command.revision(config, "hand written change", rev_id=NEW)
    assert not isinstance(written, list) and written is not None
    assert Path(written.path) == versions / f"{NEW}_hand_written_change.py"
    for step in ("upgrade", "downgrade"):
        text = (versions / f"{NEW}_{step}.sql").read_text(encoding="utf-8")
        assert text.startswith(f"-- agency-rls revision {NEW} ({step}): hand written change\n")
        assert all(line.startswith("--") or not line for line in text.splitlines())
    offline = Config(str(REPO / "alembic.ini"))
    offline.set_main_option("version_locations", str(versions))
    capsys.readouterr()
    command.upgrade(offline, f"{HEAD}:{NEW}", sql=True)
    rendered = capsys.readouterr().out
    assert f"-- agency-rls revision {NEW} (upgrade): hand written change" in rendered
    assert f"UPDATE agency_rls_version.alembic_version SET version_num='{NEW}'" in rendered
    # Whatever the id (Alembic's own when none is given), the files the .py loads are there.
    other = command.revision(config, "another", head=NEW)
    assert not isinstance(other, list) and other is not None
    for name in (f"{other.revision}_upgrade.sql", f"{other.revision}_downgrade.sql"):
        assert (versions / name).is_file()
        assert f'"{name}"' in Path(other.path).read_text(encoding="utf-8")


def test_the_command_line_says_when_there_is_no_change(server: str) -> None:
    """``agency-rls revision`` on the package's own definition: nothing to write, exit 0."""
    before = sorted(p.name for p in VERSIONS.iterdir())
    from agency_rls.cluster.database import conninfo_url

    result = CliRunner().invoke(app, ["revision", "-m", "nothing", "--scratch-url", conninfo_url(server)])
    assert result.exit_code == 0, result.output
    assert "no change" in result.stderr and result.stdout == ""
    assert sorted(p.name for p in VERSIONS.iterdir()) == before


def test_generated_sql_names_roles_only_by_placeholder(server: str, tmp_path: Path) -> None:
    """The SQL runs for any prefix: no scratch prefix is left in it."""
    versions, definition = scratch_copies(tmp_path)
    change_the_rules(definition)
    migrations_runner.revision("x", definition_dir=definition, versions_dir=versions, scratch_server=server)
    for step in ("upgrade", "downgrade"):
        text = (versions / f"{NEW}_{step}.sql").read_text(encoding="utf-8")
        assert not re.search(r"\bz[hc][0-9a-f]{8}_", text)
        render(text, ManagementRoles("crm_"))  # every placeholder is known


def test_alembic_revision_autogenerate_takes_its_options_from_x(server: str, tmp_path: Path) -> None:
    """``agency-rls alembic -x scratch_server=… -x definition_dir=… revision --autogenerate``: env.py's way."""
    from agency_rls.cluster.database import conninfo_url

    _versions, definition = scratch_copies(tmp_path)
    before = sorted(p.name for p in VERSIONS.iterdir())
    result = CliRunner().invoke(
        app,
        [
            "alembic",
            "-x",
            f"scratch_server={conninfo_url(server)}",
            "-x",
            f"definition_dir={definition}",
            "revision",
            "--autogenerate",
            "-m",
            "nothing",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        f"agency-rls: no change: the definition matches the one recorded at revision {HEAD}" in result.stderr
    )
    assert sorted(p.name for p in VERSIONS.iterdir()) == before
