"""Alembic, driven from Python with the project's migrations wherever the package is installed."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from agency_rls.migrations import offline, version_table
from agency_rls.migrations.locking import lock_tables
from agency_rls.rls_policies.definition import TEARDOWN_FILE, read_template, render, security_template
from agency_rls.rls_policies.names import ManagementRoles, check_prefix
from agency_rls.rls_policies.privileges import require_install, require_walk
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from agency_rls.cluster.database import libpq_conninfo, sqlalchemy_url

#: This package's folder: env.py, script.py.mako and versions/ (the wheel ships them).
MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(
    url: str | None, *, role_prefix: str | None = None, versions_dir: Path | None = None
) -> Config:
    """An Alembic Config for ``url`` (None: libpq environment), optionally with a role prefix.

    ``versions_dir``: another folder of revisions than the package's (tests copy the shipped ones).
    """
    config = Config(stdout=sys.stdout)  # the stream of now, not of import time (tests capture it)
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(versions_dir or MIGRATIONS_DIR / "versions"))
    # '%' is ConfigParser's interpolation character; URLs may carry %2F.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    if role_prefix is not None:
        config.attributes["requested_role_prefix"] = role_prefix
    return config


#: The revision that creates the tables; everything after it is the security definition.
TABLES_REVISION = "0001"


@contextmanager
def _lock_waits_explained() -> Iterator[None]:
    """A lock wait that gave up (locking.py bounds them all) becomes a one-line reason."""
    try:
        yield
    except (DBAPIError, psycopg.Error) as error:
        if getattr(getattr(error, "orig", None) or error, "sqlstate", None) != "55P03":
            raise
        raise SystemExit(
            "agency-rls: a lock the migration needs was not granted in time: another session holds it (an "
            "open transaction of a principal? see pg_stat_activity and pg_blocking_pids()); nothing changed"
        ) from None


#: Revisions whose recorded SQL creates or alters a BYPASSRLS role: walking over them needs SUPERUSER.
BYPASSRLS_REVISIONS = ("0002", "0004")


def walks_bypassrls(config: Config, at: str | None, revision: str) -> bool:
    """Whether going from ``at`` to ``revision`` walks over a revision that needs SUPERUSER.

    A target Alembic cannot name here (relative steps) counts as one: env.py checks again exactly.
    """
    script = ScriptDirectory.from_config(config)
    try:
        target = None if revision == "base" else script.get_revision(revision)
    except Exception:  # '+1', '-2' …: be conservative
        return True
    low, high = sorted((at or "0000", target.revision if target is not None else "0000"))
    return any(low < step <= high for step in BYPASSRLS_REVISIONS)


@dataclass(frozen=True)
class Moved:
    """Where a migrate or downgrade left the database: the revisions before and after (None: base)."""

    before: str | None
    after: str | None

    @property
    def steps(self) -> list[str]:
        """The revisions applied or reverted, one 'FROM -> TO' line each, in the order they ran."""
        return revision_steps(self.before, self.after)


def revision_steps(before: str | None, after: str | None) -> list[str]:
    """'0001 -> 0002' lines from ``before`` to ``after`` (upwards or downwards; None is base)."""
    script = ScriptDirectory.from_config(alembic_config(None))

    def chain(lower: str | None, upper: str | None) -> list[tuple[str | None, str]] | None:
        """(down, up) pairs walking from ``upper`` down to ``lower``; None when ``lower`` is not below."""
        pairs: list[tuple[str | None, str]] = []
        revision = upper
        while revision != lower:
            if revision is None:
                return None
            found = script.get_revision(revision)
            assert found is not None
            down = found.down_revision
            down = down if isinstance(down, str) or down is None else down[0]
            pairs.append((down, found.revision))
            revision = down
        return pairs

    upwards = chain(before, after)
    if upwards is not None:
        return [f"{down or 'base'} -> {up}" for down, up in reversed(upwards)]
    return [f"{up} -> {down or 'base'}" for down, up in chain(after, before) or []]


def upgrade(
    url: str | None,
    revision: str = "head",
    *,
    role_prefix: str | None = None,
    sql: bool = False,
    versions_dir: Path | None = None,
) -> Moved | None:
    """``alembic upgrade``; ``sql`` prints the SQL instead of running it.

    A database that was never migrated, upgraded to head, gets the tables (revision 0001) and then
    the current security definition directly, stamped head, in one transaction: what walking every
    revision gives (tests/test_definition_drift.py checks the two catalogs are equal), without the
    history's detours. The recorded revision 0002 creates a BYPASSRLS role that 0004 removes; a DBA
    without SUPERUSER (managed PostgreSQL) cannot create one, but can install from the definition.
    """
    if sql:
        _upgrade_sql(url, revision, role_prefix)
        return None
    config = alembic_config(url, role_prefix=role_prefix, versions_dir=versions_dir)
    _check(url, require_install, "migrating agency-rls")
    at = migrated_revision(url, versions_dir=versions_dir)
    if revision == "head" and at == head_revision(versions_dir) and _version_table_at_home(url):
        if role_prefix is not None and url:
            offline.database_prefix(url, role_prefix)  # a different prefix is refused, even with nothing to do
        return Moved(at, at)  # nothing to do: no lock taken, nothing run
    if revision == "head" and at is None:
        with _lock_waits_explained():
            _install_current_definition(config, url)
        return Moved(at, migrated_revision(url, versions_dir=versions_dir))
    if walks_bypassrls(config, at, revision):
        _check(url, require_walk, f"upgrading from revision {at or 'base'}")
    with _lock_waits_explained():
        command.upgrade(config, revision)
    return Moved(at, migrated_revision(url, versions_dir=versions_dir))


def _version_table_at_home(url: str | None) -> bool:
    """Whether the version table is in its own schema already (else migrate moves it: version_table.py)."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        found = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            (f"{version_table.VERSION_SCHEMA}.{version_table.VERSION_TABLE}",),
        ).fetchone()
    return bool(found and found[0])


def _offline_range(
    url: str | None, revision: str, role_prefix: str | None
) -> tuple[str | None, str, str | None]:
    """(FROM, TO, prefix) of an offline run: FROM and the prefix from the database at ``url`` if any."""
    start, end = offline.split_range(revision)
    if role_prefix is not None:
        check_prefix(role_prefix)  # before any connection: a bad prefix is the reason, not an unreachable server
    if url:
        role_prefix = offline.database_prefix(url, role_prefix)
        if start is None:
            start = migrated_revision(url)
    return start, end, role_prefix


def _upgrade_sql(url: str | None, revision: str, role_prefix: str | None) -> None:
    """``migrate --sql``: the prefix and the starting revision of the database at ``url`` (see offline.py)."""
    start, end, role_prefix = _offline_range(url, revision, role_prefix)
    config = alembic_config(url, role_prefix=role_prefix)
    head = head_revision()
    if start in (None, "base") and end in ("head", head):
        prefix = role_prefix if role_prefix is not None else os.environ.get("AGENCY_RLS_ROLE_PREFIX", "")
        sys.stdout.write(offline.install_script(config, check_prefix(prefix), TABLES_REVISION, head))
        return
    command.upgrade(config, f"{start}:{end}" if start else end, sql=True)


def downgrade(
    url: str | None,
    revision: str,
    *,
    sql: bool = False,
    role_prefix: str | None = None,
    versions_dir: Path | None = None,
) -> Moved | None:
    """``alembic downgrade``; at base the version table is dropped too (see env.py).

    From head to base, the current definition's teardown runs instead of every revision's
    downgrade (the drift test checks it removes everything), so a DBA without SUPERUSER can
    remove what it installed; then revision 0001's downgrade drops the tables. One transaction.
    """
    if sql:
        _downgrade_sql(url, revision, role_prefix)
        return None
    config = alembic_config(url, versions_dir=versions_dir)
    _check(url, require_install, "downgrading agency-rls")
    at = migrated_revision(url, versions_dir=versions_dir)
    if at is None:
        return Moved(None, None)
    if revision == "base" and at == head_revision(versions_dir):
        with _lock_waits_explained():
            _remove_current_definition(config, url)
        return Moved(at, None)
    if walks_bypassrls(config, at, revision):
        _check(url, require_walk, f"downgrading to revision {revision}")
    with _lock_waits_explained():
        command.downgrade(config, revision)
    return Moved(at, migrated_revision(url, versions_dir=versions_dir))


def _downgrade_sql(url: str | None, revision: str, role_prefix: str | None) -> None:
    """``downgrade --sql``: the prefix and the starting revision of the database at ``url`` (see offline.py).

    Without a database the range must be given (``0006:base``), as Alembic requires offline.
    """
    start, end, role_prefix = _offline_range(url, revision, role_prefix)
    if url and start is None:
        raise SystemExit("agency-rls: nothing to downgrade: the database is not migrated")
    if start is None:
        raise SystemExit(
            f"agency-rls: downgrade --sql without a database needs the revision to start from: "
            f"'{head_revision()}:{end}' (or give --database-url to start where the database is)"
        )
    config = alembic_config(url, role_prefix=role_prefix)
    head = head_revision()
    if start in ("head", head) and end == "base":
        prefix = role_prefix if role_prefix is not None else os.environ.get("AGENCY_RLS_ROLE_PREFIX", "")
        sys.stdout.write(offline.removal_script(config, check_prefix(prefix), TABLES_REVISION, head))
        return
    command.downgrade(config, f"{start}:{end}", sql=True)


def _check(url: str | None, requirement: Callable[[psycopg.Connection[Any], str], None], what: str) -> None:
    """Run a privilege check of ``agency_rls.rls_policies.privileges`` before anything changes."""
    with psycopg.connect(libpq_conninfo(url)) as conn:
        requirement(conn, what)


def head_revision(versions_dir: Path | None = None) -> str:
    """The newest revision."""
    head = ScriptDirectory.from_config(alembic_config(None, versions_dir=versions_dir)).get_current_head()
    assert head is not None
    return head


def our_revisions(versions_dir: Path | None = None) -> set[str]:
    """Every revision id of the project."""
    config = alembic_config(None, versions_dir=versions_dir)
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def migrated_revision(url: str | None, *, versions_dir: Path | None = None) -> str | None:
    """The revision the database is at, or None when it was never migrated (or downgraded to base)."""
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return version_table.migrated_revision(conn, our_revisions(versions_dir))
    finally:
        engine.dispose()


def _install_current_definition(config: Config, url: str | None) -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, TABLES_REVISION)
            roles = ManagementRoles(config.attributes["role_prefix"])
            _execute(conn, render(security_template(), roles))
            config.attributes["stamping"] = True
            command.stamp(config, "head")
    finally:
        engine.dispose()


def _remove_current_definition(config: Config, url: str | None) -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            lock_tables(conn)
            prefix = conn.execute(text("SELECT agency_rls.role_prefix()")).scalar_one()
            _execute(conn, render(read_template(TEARDOWN_FILE), ManagementRoles(prefix)))
            config.attributes["connection"] = conn
            config.attributes["requested_role_prefix"] = prefix
            config.attributes["removing"] = True
            config.attributes["stamping"] = True
            command.stamp(config, TABLES_REVISION)
            config.attributes["stamping"] = False
            command.downgrade(config, "base")
    finally:
        engine.dispose()


def _execute(conn: Connection, script: str) -> None:
    """Run a whole SQL script on the connection's driver connection (see migrations.sql_ops)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(script)


def history() -> list[dict[str, str | bool | None]]:
    """The revisions, newest first (needs no database): revision, down_revision, message, head."""
    script = ScriptDirectory.from_config(alembic_config(None))
    head = script.get_current_head()
    return [
        {
            "revision": found.revision,
            "down_revision": found.down_revision if isinstance(found.down_revision, str) else None,
            "message": " ".join((found.doc or "").split()),
            "head": found.revision == head,
        }
        for found in script.walk_revisions()
    ]


def revision(
    message: str,
    *,
    autogenerate: bool = True,
    definition_dir: Path | None = None,
    versions_dir: Path | None = None,
    scratch_server: str | None = None,
    rev_id: str | None = None,
) -> Path | None:
    """``agency-rls revision``: a new revision and its two SQL files; the .py's path, or None (no change).

    With ``autogenerate`` the SQL moves the definition recorded at head to the current one
    (``definition_dir``, default ``rls_policies/sql``), worked out on ``scratch_server`` (a superuser
    conninfo; default: a throwaway cluster); see agency_rls.migrations.autogen.
    """
    config = alembic_config(None, versions_dir=versions_dir)
    if definition_dir is not None:
        config.attributes["definition_dir"] = str(definition_dir)
    if scratch_server is not None:
        config.attributes["scratch_server"] = scratch_server
    if rev_id is None:
        from agency_rls.migrations.autogen import next_revision_id

        rev_id = next_revision_id(ScriptDirectory.from_config(config))
    written = command.revision(config, message, autogenerate=autogenerate, rev_id=rev_id)
    if not written or isinstance(written, list):
        return None
    return Path(written.path)
