"""``agency-rls revision`` (and ``alembic revision [--autogenerate]``): new revisions that write their own SQL.

Every revision records the SQL it applies beside itself, as ``<rev>_upgrade.sql`` and
``<rev>_downgrade.sql`` (placeholders for role names, filled in with the database's prefix when it runs;
``sql_ops.run_recorded``). With autogenerate, that SQL is the difference between

- the definition recorded at head: a scratch database where the recorded SQL of every revision is
  replayed, in order, and
- the current definition: a scratch database with revision 0001's tables and ``rls_policies/sql/``
  (or the copy given with ``definition_dir``),

read from both catalogs (``autogen_catalog``) and written as SQL (``autogen_diff``). Before anything is
written, the SQL is checked on those scratch databases: the upgrade must turn head into the current
definition and the downgrade turn it back, both compared with the drift test's catalog queries
(``definition_catalog``); otherwise nothing is written and the message says what differs. With no
change, nothing is written either.

The scratch databases live on a throwaway cluster this starts (or on ``scratch_server``, a superuser
connection string where it may create and drop two databases and their roles): replaying the recorded
revisions needs SUPERUSER (0002 and 0004 handle a BYPASSRLS role), which a managed server's DBA lacks.
Without autogenerate (``alembic revision -m``, ``agency-rls revision --empty``) the two files are
written with only their header, for SQL written by hand.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from agency_rls.migrations.autogen_catalog import Placeholders, read_catalog
from agency_rls.migrations.autogen_diff import migration_sql, unsupported
from agency_rls.migrations.definition_catalog import catalog_differences, definition_catalog
from agency_rls.rls_policies.definition import render, security_template
from agency_rls.rls_policies.names import ManagementRoles
from alembic.script import ScriptDirectory
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agency_rls.cluster.database import conninfo_url, create_empty_database, sqlalchemy_url

#: The revision that creates the domain tables; the definition is applied on top of it.
TABLES_REVISION = "0001"


class RevisionRefused(SystemExit):
    """Autogenerate cannot write this revision; nothing was written (the message says why and what to do)."""


def recorded_sql_names(revision: str) -> tuple[str, str]:
    """The files a revision records its SQL in: ``<rev>_upgrade.sql``, ``<rev>_downgrade.sql``."""
    return f"{revision}_upgrade.sql", f"{revision}_downgrade.sql"


def next_revision_id(script: ScriptDirectory) -> str:
    """The next four-digit revision id after the highest numbered one (``0006`` -> ``0007``)."""
    numbers = [int(r.revision) for r in script.walk_revisions() if re.fullmatch(r"\d+", r.revision)]
    return f"{max(numbers, default=0) + 1:04d}"


def recorded_upgrades(script: ScriptDirectory) -> list[tuple[str, Path]]:
    """(revision, its ``<rev>_upgrade.sql``) from base to the single head, checking each revision loads it."""
    heads = script.get_heads()
    if len(heads) != 1:
        raise RevisionRefused(
            f"agency-rls: the revisions have {len(heads)} heads ({', '.join(heads)}); merge them first"
        )
    found = []
    for revision in reversed(list(script.walk_revisions("base", "heads"))):
        path = Path(revision.path)
        upgrade = path.parent / recorded_sql_names(revision.revision)[0]
        if not upgrade.is_file() or upgrade.name not in path.read_text(encoding="utf-8"):
            raise RevisionRefused(
                f"agency-rls: revision {revision.revision} ({path.name}) does not record its SQL in {upgrade.name}: "
                "autogenerate replays the recorded SQL of every revision"
            )
        found.append((revision.revision, upgrade))
    return found


@dataclass
class ScratchPair:
    """Two scratch databases: one at head (recorded SQL replayed), one from the current definition."""

    server: str
    head: str
    head_prefix: str
    current: str
    current_prefix: str
    head_revision: str

    def connect(self, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(make_conninfo(self.server, dbname=database), autocommit=True)


@contextmanager
def scratch_server(server: str | None) -> Iterator[str]:
    """``server`` as is, or a throwaway cluster's superuser conninfo for the time of the block."""
    if server:
        yield server
        return
    from agency_rls.cluster.throwaway import ThrowawayCluster

    with ThrowawayCluster() as cluster:
        yield cluster.conninfo()


@contextmanager
def scratch_pair(script: ScriptDirectory, definition_dir: Path | None, server: str) -> Iterator[ScratchPair]:
    """Build both scratch databases on ``server``; drop them and their roles afterwards."""
    upgrades = recorded_upgrades(script)
    token = secrets.token_hex(4)
    pair = ScratchPair(
        server=server,
        head=f"agency_rls_autogen_head_{token}",
        head_prefix=f"zh{token}_",
        current=f"agency_rls_autogen_current_{token}",
        current_prefix=f"zc{token}_",
        head_revision=upgrades[-1][0],
    )
    created: list[tuple[str, str]] = []
    try:
        for database, prefix in ((pair.head, pair.head_prefix), (pair.current, pair.current_prefix)):
            create_empty_database(server, database)
            created.append((database, prefix))
        with pair.connect(pair.head) as conn:
            roles = ManagementRoles(pair.head_prefix)
            for revision, upgrade in upgrades:
                try:
                    conn.execute(render(upgrade.read_text(encoding="utf-8"), roles))  # type: ignore[arg-type]
                except psycopg.Error as error:
                    raise RevisionRefused(
                        f"agency-rls: replaying revision {revision}'s recorded SQL failed: {error}".splitlines()[
                            0
                        ]
                    ) from None
        with pair.connect(pair.current) as conn:
            roles = ManagementRoles(pair.current_prefix)
            tables = dict(upgrades)[TABLES_REVISION]
            conn.execute(render(tables.read_text(encoding="utf-8"), roles))  # type: ignore[arg-type]
            try:
                conn.execute(render(security_template(definition_dir), roles))  # type: ignore[arg-type]
            except psycopg.Error as error:
                where = definition_dir or "rls_policies/sql"
                raise RevisionRefused(
                    f"agency-rls: the definition in {where} does not apply: {error}".splitlines()[0]
                ) from None
        yield pair
    finally:
        _drop(server, created)


def _drop(server: str, created: list[tuple[str, str]]) -> None:
    """Drop the scratch databases and every role of their prefixes (roles are cluster-wide)."""
    with psycopg.connect(server, autocommit=True) as conn:
        for database, prefix in created:
            roles = [
                row[0]
                for row in conn.execute(
                    "SELECT rolname FROM pg_catalog.pg_roles WHERE starts_with(rolname, %s)", (prefix,)
                ).fetchall()
            ]
            if roles:
                with psycopg.connect(make_conninfo(server, dbname=database), autocommit=True) as inside:
                    inside.execute(
                        sql.SQL("DROP OWNED BY {}").format(sql.SQL(", ").join(map(sql.Identifier, roles)))
                    )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            for role in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@dataclass(frozen=True)
class GeneratedSql:
    """A revision's recorded SQL, as templates (role names as placeholders)."""

    upgrade: str
    downgrade: str


def generate(pair: ScratchPair) -> GeneratedSql | None:
    """The SQL from head to the current definition and back; None when they are the same.

    Raises RevisionRefused when the difference holds something this does not write, or when the SQL
    written does not reproduce each end on the scratch databases.
    """
    with pair.connect(pair.head) as conn:
        head = read_catalog(conn, pair.head_prefix)
        head_full = definition_catalog(conn, pair.head_prefix)
    with pair.connect(pair.current) as conn:
        current = read_catalog(conn, pair.current_prefix)
        current_full = definition_catalog(conn, pair.current_prefix)
    if not catalog_differences(head_full, current_full):
        return None
    cannot = unsupported(head, current)
    if cannot:
        raise RevisionRefused(
            f"agency-rls: the definition changes {', '.join(cannot)}, which autogenerate does not write: write "
            "this revision by hand (agency-rls revision --empty -m MESSAGE gives its two SQL files)"
        )
    generated = GeneratedSql(upgrade=migration_sql(head, current), downgrade=migration_sql(current, head))
    _check_templated(generated, pair)
    _verify(pair, generated, head_full, current_full)
    return generated


def _check_templated(generated: GeneratedSql, pair: ScratchPair) -> None:
    for prefix in (pair.head_prefix, pair.current_prefix):
        if Placeholders(prefix).leftover(generated.upgrade + generated.downgrade):
            raise RevisionRefused(
                "agency-rls: the difference names a role of the project in a way no placeholder expresses; "
                "write this revision by hand (agency-rls revision --empty -m MESSAGE)"
            )


def _verify(
    pair: ScratchPair, generated: GeneratedSql, head: dict[str, Any], current: dict[str, Any]
) -> None:
    """Run the upgrade, then the downgrade, on the head database (rolled back), comparing each end."""
    roles = ManagementRoles(pair.head_prefix)
    with pair.connect(pair.head) as conn, conn.transaction(force_rollback=True):
        for step, script, expected in (
            ("upgrade", generated.upgrade, current),
            ("downgrade", generated.downgrade, head),
        ):
            try:
                conn.execute(render(script, roles))  # type: ignore[arg-type]
            except psycopg.Error as error:
                raise RevisionRefused(
                    f"agency-rls: the generated {step} fails on a database at revision {pair.head_revision}: "
                    f"{str(error).splitlines()[0]}; nothing written (write this revision by hand: "
                    "agency-rls revision --empty -m MESSAGE)"
                ) from None
            differing = catalog_differences(definition_catalog(conn, pair.head_prefix), expected)
            if differing:
                raise RevisionRefused(
                    f"agency-rls: the generated {step} does not reproduce the definition ({', '.join(differing)} "
                    "differ); nothing written (write this revision by hand: agency-rls revision --empty -m MESSAGE)"
                )


def header(revision: str, message: str, step: str, generated: bool) -> str:
    """The comment at the top of a recorded SQL file."""
    lines = [f"-- agency-rls revision {revision} ({step}): {message}", "--"]
    if generated:
        lines += [
            "-- Written by `agency-rls revision` from the difference between the definition recorded at the",
            "-- previous revision and rls_policies/sql/, and checked to move one to the other on scratch",
            "-- databases. Review it; data a change needs (back-filling a new column, say) is not generated.",
        ]
    else:
        lines += ["-- Written by hand: the SQL of this step, after this header."]
    lines += [
        "-- Role names are placeholders (owner, owner_name … in double braces), filled in with the database's",
        "-- role prefix when the revision runs. Once the revision is released, this file never changes.",
        "",
    ]
    return "\n".join(lines) + "\n"


def write_recorded_sql(
    directory: Path, revision: str, message: str, generated: GeneratedSql | None
) -> tuple[Path, Path]:
    """Write ``<rev>_upgrade.sql`` and ``<rev>_downgrade.sql`` into ``directory`` (never over existing files)."""
    paths = tuple(directory / name for name in recorded_sql_names(revision))
    for path in paths:
        if path.exists():
            raise RevisionRefused(f"agency-rls: {path} exists already; nothing written")
    for path, step, body in zip(
        paths,
        ("upgrade", "downgrade"),
        (generated.upgrade, generated.downgrade) if generated else ("", ""),
        strict=True,
    ):
        path.write_text(header(revision, message, step, generated is not None) + body, encoding="utf-8")
    return paths  # type: ignore[return-value]


def write_recorded_sql_beside(config: Any, revision: str, message: str | None) -> str:
    """From script.py.mako: empty ``<rev>_upgrade.sql``/``<rev>_downgrade.sql`` unless they exist already.

    Every new revision gets the files its .py loads, however it was made (``alembic revision``,
    ``alembic merge``, ``agency-rls revision --empty``); autogenerate writes them with SQL before.
    """
    directory = Path(ScriptDirectory.from_config(config).versions)
    if not all((directory / name).exists() for name in recorded_sql_names(revision)):
        write_recorded_sql(directory, revision, message or "", None)
    return ""


def revision_directives_writer(
    script: ScriptDirectory, generated: GeneratedSql | None, *, autogenerate: bool, rev_id_given: bool
) -> Any:
    """Alembic's ``process_revision_directives``: the revision id, and the two SQL files beside the .py."""

    def process(context: Any, revision: Any, directives: list[Any]) -> None:
        if autogenerate and generated is None:
            print(
                "agency-rls: no change: the definition matches the one recorded at revision "
                f"{script.get_current_head()}; nothing written",
                file=sys.stderr,
            )
            directives[:] = []
            return
        migration = directives[0]
        if not rev_id_given:
            migration.rev_id = next_revision_id(script)
        directory = Path(migration.version_path or script.versions)
        message = migration.message or ""
        write_recorded_sql(directory, migration.rev_id, message, generated)

    return process


def run_revision_environment(
    context: Any, *, autogenerate: bool, metadata: Any, version_table_schema: str
) -> None:
    """What env.py does for ``alembic revision``: see the module docstring.

    ``context`` is Alembic's ``alembic.context`` proxy. Options come from ``config.attributes``
    (``definition_dir``, ``scratch_server``: set by ``agency-rls revision``) or ``-x definition_dir=…``,
    ``-x scratch_server=…`` on the alembic command line.
    """
    from sqlalchemy import create_engine, pool

    config = context.config
    x = context.get_x_argument(as_dictionary=True)
    # Alembic hands env.py the revision command only through its environment context options.
    revision_context = context._proxy.context_opts["revision_context"]
    rev_id_given = bool(revision_context.command_args.get("rev_id"))
    script = ScriptDirectory.from_config(config)
    if not autogenerate:
        context.configure(
            url="postgresql+psycopg://",
            as_sql=True,
            dont_mutate=True,
            process_revision_directives=revision_directives_writer(
                script, None, autogenerate=False, rev_id_given=rev_id_given
            ),
        )
        context.run_migrations()
        return
    definition_dir = config.attributes.get("definition_dir") or x.get("definition_dir")
    server = config.attributes.get("scratch_server") or x.get("scratch_server")
    with (
        scratch_server(server) as found,
        scratch_pair(script, Path(definition_dir) if definition_dir else None, found) as pair,
    ):
        generated = generate(pair)
        with pair.connect(pair.head) as conn:  # Alembic checks that the database it compares is at head
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(version_table_schema)))
            conn.execute(
                sql.SQL("CREATE TABLE {}.alembic_version (version_num varchar(32) PRIMARY KEY)").format(
                    sql.Identifier(version_table_schema)
                )
            )
            conn.execute(
                sql.SQL("INSERT INTO {}.alembic_version VALUES (%s)").format(
                    sql.Identifier(version_table_schema)
                ),
                (pair.head_revision,),
            )
        engine = create_engine(
            sqlalchemy_url(conninfo_url(make_conninfo(pair.server, dbname=pair.head))),
            poolclass=pool.NullPool,
        )
        try:
            with engine.connect() as connection:
                context.configure(
                    connection=connection,
                    target_metadata=metadata,
                    version_table_schema=version_table_schema,
                    include_name=lambda *_: (
                        False
                    ),  # the tables are revision 0001's; the definition is compared above
                    process_revision_directives=revision_directives_writer(
                        script, generated, autogenerate=True, rev_id_given=rev_id_given
                    ),
                )
                context.run_migrations()
        finally:
            engine.dispose()
