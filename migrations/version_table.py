"""Where agency-rls keeps its Alembic version table, and what it refuses to install over.

Why a schema of its own: a database that already has an Alembic history keeps it in
``public.alembic_version``; agency-rls's revisions there would collide with the host's ("Can't
locate revision identified by …"). agency-rls's version table is ``agency_rls_version.alembic_version``:
a host project runs its own migrations and agency-rls's side by side, in either order, each with its
own version table. Not in schema ``agency_rls``: revision 0002 creates that schema and the downgrade
to base drops it, while the version table must exist before the first revision and until after the
last one. ``downgrade base`` drops this schema too (when nothing else is in it), so nothing of the
project remains.

Databases migrated before this kept the table in ``public``: the first command that moves
revisions (migrate, downgrade, stamp) moves it here when it holds only agency-rls's revisions and the
project is installed; ``current`` reads it where it is.
"""

from __future__ import annotations

from agency_rls.schema import ALL_TABLES
from sqlalchemy import Connection, text

#: The schema of agency-rls's own ``alembic_version`` table.
VERSION_SCHEMA = "agency_rls_version"
VERSION_TABLE = "alembic_version"
LEGACY_SCHEMA = "public"


def _exists(connection: Connection, schema: str) -> bool:
    name = f"{schema}.{VERSION_TABLE}"
    return connection.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None


def _holds_ours(connection: Connection, our_revisions: set[str]) -> bool:
    """Whether ``public.alembic_version`` is agency-rls's (pre-schema) version table, not a host's."""
    versions = set(
        connection.execute(text(f"SELECT version_num FROM {LEGACY_SCHEMA}.{VERSION_TABLE}")).scalars()
    )
    if not versions or not versions <= our_revisions:
        return False
    if connection.execute(text("SELECT to_regprocedure('agency_rls.role_prefix()')")).scalar() is not None:
        return True
    # Revision 0001 only: the domain tables, without the agency_rls schema yet.
    return versions == {"0001"} and all(
        connection.execute(text("SELECT to_regclass(:name)"), {"name": f"public.{table}"}).scalar()
        is not None
        for table in ALL_TABLES
    )


def version_schema_for(connection: Connection, our_revisions: set[str], *, moving: bool) -> str:
    """The schema Alembic should use for agency-rls's version table on ``connection``.

    ``moving`` (a command that changes revisions): a legacy ``public.alembic_version`` of agency-rls is
    moved to VERSION_SCHEMA, and the schema is created when missing. Otherwise nothing changes and a
    legacy table is read where it is.
    """
    if not _exists(connection, VERSION_SCHEMA) and _exists(connection, LEGACY_SCHEMA):
        if _holds_ours(connection, our_revisions):
            if not moving:
                return LEGACY_SCHEMA
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}"))
            connection.execute(
                text(f"ALTER TABLE {LEGACY_SCHEMA}.{VERSION_TABLE} SET SCHEMA {VERSION_SCHEMA}")
            )
            return VERSION_SCHEMA
    if moving:
        _create_schema(connection)
    return VERSION_SCHEMA


def _create_schema(connection: Connection) -> None:
    """CREATE SCHEMA only when missing (IF NOT EXISTS still needs CREATE on the database)."""
    if connection.execute(text("SELECT to_regnamespace(:s)"), {"s": VERSION_SCHEMA}).scalar() is None:
        connection.execute(text(f"CREATE SCHEMA {VERSION_SCHEMA}"))


def drop_version_table(connection: Connection) -> None:
    """At base: the version table and its schema go too (the schema only if nothing else is in it)."""
    connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_SCHEMA}.{VERSION_TABLE}"))
    empty = connection.execute(
        text(
            "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = to_regnamespace(:s))"
            " AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc WHERE pronamespace = to_regnamespace(:s))"
            " AND NOT EXISTS (SELECT FROM pg_catalog.pg_type WHERE typnamespace = to_regnamespace(:s))"
        ),
        {"s": VERSION_SCHEMA},
    ).scalar()
    if empty:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {VERSION_SCHEMA}"))


def migrated_revision(connection: Connection, our_revisions: set[str]) -> str | None:
    """The revision agency-rls is at on ``connection`` (either location), or None."""
    schema = version_schema_for(connection, our_revisions, moving=False)
    if not _exists(connection, schema):
        return None
    return connection.execute(text(f"SELECT version_num FROM {schema}.{VERSION_TABLE}")).scalar()


def refuse_taken_tables(connection: Connection) -> None:
    """Before the first revision: a host's table (or schema) named like one of agency-rls's, in one line.

    agency-rls creates its tables in schema public and its functions in schema agency_rls, under fixed
    names; it never adopts a table it did not create.
    """
    taken = [
        f"table public.{table}"
        for table in ALL_TABLES
        if connection.execute(text("SELECT to_regclass(:name)"), {"name": f"public.{table}"}).scalar()
        is not None
    ]
    if connection.execute(text("SELECT to_regnamespace('agency_rls')")).scalar() is not None:
        taken.append("schema agency_rls")
    if not taken:
        return
    more = f" (also {', '.join(taken[1:])})" if len(taken) > 1 else ""
    remedy = (
        f"ALTER TABLE {taken[0].split()[1]} SET SCHEMA app"
        if taken[0].startswith("table ")
        else "ALTER SCHEMA agency_rls RENAME TO app_rls"
    )
    raise SystemExit(
        f"agency-rls: {taken[0]} exists already and agency-rls did not create it{more}: agency-rls needs "
        f"tables {', '.join(ALL_TABLES)} in schema public and schema agency_rls for itself; install it into a "
        f"database of its own, or move or rename yours first (e.g. {remedy}); nothing changed"
    )
