"""Alembic environment for agency-rls.

Where the database comes from, first wins: ``-x database_url=…``, ``sqlalchemy.url`` set by
the ``agency-rls`` command, ``DATABASE_URL``, then the libpq environment (``PGHOST`` …).

The role prefix: the one stored in the database (``agency_rls.role_prefix()``) once it is
migrated; for a new database ``-x role_prefix=…`` or ``AGENCY_RLS_ROLE_PREFIX`` (default
empty). Asking for a different prefix than the stored one is an error, never a rename.

All revisions of one command run in a single transaction (PostgreSQL DDL and CREATE ROLE
are transactional): a failing revision leaves the previous state intact. The version table is
``agency_rls_version.alembic_version``, beside any host project's own (``version_table.py``); when a
downgrade reaches base it is dropped too, with its schema, so nothing of the project remains.

``alembic revision --autogenerate`` runs this file too: it writes the new revision's two SQL files
with the SQL that moves the definition recorded at head to ``rls_policies/sql`` (``agency_rls.
migrations.autogen``); without ``--autogenerate``, ``script.py.mako`` writes them empty.
"""

from __future__ import annotations

import os

from agency_rls.migrations.locking import lock_tables
from agency_rls.migrations.runner import BYPASSRLS_REVISIONS
from agency_rls.migrations.version_table import (
    VERSION_SCHEMA,
    drop_version_table,
    refuse_taken_tables,
    version_schema_for,
)
from agency_rls.rls_policies.names import MANAGEMENT_MARKER, ManagementRoles, check_prefix, marker_database
from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool, text

config = context.config


def database_url() -> str:
    """The SQLAlchemy URL to migrate, normalised to the psycopg 3 driver."""
    url = (
        context.get_x_argument(as_dictionary=True).get("database_url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("DATABASE_URL")
        or "postgresql://"
    )
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def requested_prefix() -> str | None:
    """The prefix asked for on the command line or in the environment, if any."""
    value = context.get_x_argument(as_dictionary=True).get("role_prefix")
    if value is None:
        value = config.attributes.get("requested_role_prefix")
    if value is None:
        value = os.environ.get("AGENCY_RLS_ROLE_PREFIX")
    return None if value is None else check_prefix(value)


def stored_prefix(connection: Connection) -> str | None:
    """The prefix this database was migrated with, or None when it is not migrated."""
    if connection.execute(text("SELECT to_regprocedure('agency_rls.role_prefix()')")).scalar() is None:
        return None
    return connection.execute(text("SELECT agency_rls.role_prefix()")).scalar_one()


def refuse_taken_prefix(connection: Connection, prefix: str) -> None:
    """Refuse, in one line, a prefix whose roles belong to another database of the cluster.

    Roles are cluster-wide: adopting another database's roles would let its principals read
    this one. The recorded SQL refuses too; this says it before anything runs, with the remedy.
    """
    database = connection.execute(text("SELECT current_database()")).scalar_one()
    rows = connection.execute(
        text(
            "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles"
            " WHERE rolname = ANY (:names) ORDER BY rolname"
        ),
        {"names": list(ManagementRoles(prefix).all())},
    ).all()
    for name, marker in rows:
        owner = marker_database(marker)
        if owner is not None and owner != database:
            where = f"database {owner!r}"
        elif marker == MANAGEMENT_MARKER:
            where = "another database (migrated before revision 0003)"
        else:
            continue
        raise SystemExit(
            f"agency-rls: role prefix {prefix!r} is taken: role {name!r} belongs to {where}; a prefix belongs to "
            "one database: migrate this one with another --role-prefix (e.g. --role-prefix crm2_)"
        )


def run_migrations_offline() -> None:
    """Print the SQL of the requested revisions for review."""
    config.attributes["role_prefix"] = requested_prefix() or ""
    context.configure(
        url=database_url(), literal_binds=True, transactional_ddl=True, version_table_schema=VERSION_SCHEMA
    )
    with context.begin_transaction():
        if context.get_starting_revision_argument() is None:  # from base: Alembic creates the version table
            context.get_context().impl.static_output(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA};\n")
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply the requested revisions in one transaction.

    ``agency_rls.migrations.runner`` may pass its own connection (``config.attributes
    ["connection"]``, already in a transaction) to run several commands as one transaction.
    """
    shared = config.attributes.get("connection")
    if shared is not None:
        migrate_on(shared)
        return
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection, connection.begin():  # one transaction, checks included
        migrate_on(connection)



def refuse_walk_without_superuser(connection: Connection) -> None:
    """One line, before anything runs, when a non-superuser would walk over 0002 or 0004.

    ``agency-rls migrate`` installs a new database from the current definition instead (no
    BYPASSRLS role on the way); plain Alembic (or ``agency-rls alembic``) walks the revisions.
    Stamping runs no SQL and is never refused.
    """
    command = getattr(getattr(config, "cmd_opts", None), "cmd", None)
    if config.attributes.get("stamping") or (command and getattr(command[0], "__name__", "") == "stamp"):
        return
    if connection.execute(
        text("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
    ).scalar():
        return
    current = context.get_context().get_current_revision() or "0000"
    try:
        argument = context.get_revision_argument()
    except KeyError:  # a command that moves no revision (current, history): nothing is walked
        return
    target = (
        ScriptDirectory.from_config(config).get_revision(argument) if argument not in (None, "base") else None
    )
    destination = target.revision if target is not None else "0000"
    low, high = sorted((current, destination))
    crossed = [revision for revision in BYPASSRLS_REVISIONS if low < revision <= high]
    if crossed:
        raise SystemExit(
            f"agency-rls: going from revision {current} to {destination} walks revision {' and '.join(crossed)}, "
            "which creates or alters a BYPASSRLS role: it needs SUPERUSER (on a new database 'agency-rls "
            "migrate' installs the current definition without it; 'agency-rls downgrade base' from head removes "
            "it)"
        )


def moves_revisions() -> bool:
    """Whether the command changes the recorded revision (upgrade, downgrade, stamp), not only reads it."""
    try:
        context.get_revision_argument()
    except KeyError:  # current, history
        return False
    return True


def migrate_on(connection: Connection) -> None:
    """Resolve the role prefix, refuse a taken one, and run the revisions on ``connection``."""
    ours = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    moving = moves_revisions()
    version_schema = version_schema_for(connection, ours, moving=moving)
    stored = stored_prefix(connection)
    requested = requested_prefix()
    if stored is not None and requested is not None and requested != stored:
        raise SystemExit(
            f"agency-rls: this database was migrated with role prefix {stored!r}, not {requested!r}"
        )
    config.attributes["role_prefix"] = stored if stored is not None else (requested or "")
    if stored is None and not config.attributes.get("removing"):
        refuse_taken_prefix(connection, config.attributes["role_prefix"])
    context.configure(connection=connection, transactional_ddl=True, version_table_schema=version_schema)
    refuse_walk_without_superuser(connection)
    with context.begin_transaction():
        if (
            moving
            and not context.get_context().get_current_heads()
            and not config.attributes.get("stamping")
            and context.get_revision_argument() not in (None, "base")
        ):
            refuse_taken_tables(connection)
        lock_tables(connection)
        context.run_migrations()
        if moving and not context.get_context().get_current_heads():
            drop_version_table(connection)


def run_revision() -> None:
    """``alembic revision``: the new revision's SQL files (see agency_rls.migrations.autogen)."""
    from agency_rls.migrations.autogen import run_revision_environment
    from agency_rls.schema import metadata

    revision_context = context._proxy.context_opts["revision_context"]  # how env.py learns the command
    run_revision_environment(
        context,
        autogenerate=bool(revision_context.command_args.get("autogenerate")),
        metadata=metadata,
        version_table_schema=VERSION_SCHEMA,
    )


if context._proxy.context_opts.get("revision_context") is not None:
    run_revision()
elif context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
