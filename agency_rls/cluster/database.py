"""Where the database is: one rule for every command.

An explicit ``--database-url`` wins, then ``DATABASE_URL``, then the libpq environment
(``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``, ``PGPASSWORD``, ``PGSERVICE`` …), which an
empty conninfo picks up. URLs may be SQLAlchemy style (``postgresql+psycopg://``) or libpq
style (``postgresql://``); each consumer gets the form it needs.
"""

from __future__ import annotations

import os
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

_DRIVER_PREFIXES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://")


def explicit_url(option: str | None) -> str | None:
    """The URL given by option or DATABASE_URL, or None when neither is set."""
    return option or os.environ.get("DATABASE_URL") or None


def libpq_conninfo(url: str | None) -> str:
    """A conninfo psycopg accepts; empty (libpq environment) when ``url`` is None."""
    if not url:
        return ""
    for prefix in _DRIVER_PREFIXES:
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str | None) -> str:
    """A SQLAlchemy URL on the psycopg 3 driver; bare ``postgresql+psycopg://`` uses libpq's environment."""
    if not url:
        return "postgresql+psycopg://"
    for prefix in _DRIVER_PREFIXES:
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def conninfo_url(conninfo: str) -> str:
    """A ``postgresql://`` URL equivalent to a libpq conninfo (socket directories go in the query).

    Alembic and ``--database-url`` take URLs; psycopg and the throwaway cluster speak conninfo.
    """
    params = {key: str(value) for key, value in conninfo_to_dict(conninfo).items() if value is not None}
    dbname = params.pop("dbname", "") or ""
    return f"postgresql:///{quote(dbname, safe='')}?{urlencode(params)}"


def create_empty_database(server: str, name: str) -> None:
    """CREATE DATABASE ``name`` from template0 (nothing a DBA added to template1 comes along)."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))


def drop_database_and_prefix_roles(server: str, name: str, prefix: str) -> None:
    """Drop database ``name`` (closing its sessions) and every role whose name starts with ``prefix``.

    The sweep after a scratch database's ``downgrade base``: it removes what a failed test or
    scenario may have left, so roles (cluster-wide) never outlive the database they served.
    """
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1", (prefix,)
        ).fetchall()
        for (role,) in rows:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
