"""Where the database is: one rule for every command.

An explicit ``--database-url`` wins, then ``DATABASE_URL``, then the libpq environment
(``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``, ``PGPASSWORD``, ``PGSERVICE`` …), which an
empty conninfo picks up. One parser (``parse_connection_string``) takes URLs (``postgresql://``,
``postgres://``, SQLAlchemy's ``postgresql+psycopg://``) and libpq keyword strings (``host=…
dbname=…``) for every command, refuses anything else in one line, and gives each consumer the form
it needs (psycopg a conninfo, SQLAlchemy and Alembic a URL).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

_DRIVER_PREFIXES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class ConnectionStringError(ValueError):
    """A connection string no PostgreSQL client would take; the message is one line, without secrets."""


@dataclass(frozen=True)
class ConnectionString:
    """A parsed ``--database-url``: the one parser every command uses.

    Accepted: ``postgresql://`` and ``postgres://`` URLs (SQLAlchemy's ``postgresql+psycopg://`` too),
    libpq keyword strings (``host=db dbname=crm user=dba``), and nothing (the libpq environment).
    ``url`` keeps a URL as written (normalised to ``postgresql://``); a keyword string stays one.
    """

    text: str  # what psycopg/libpq take: a postgresql:// URL, a keyword string or ''
    is_url: bool

    @property
    def libpq(self) -> str:
        """The form psycopg and libpq take."""
        return self.text

    @property
    def sqlalchemy(self) -> str:
        """A SQLAlchemy URL on the psycopg 3 driver (a keyword string becomes URL query parameters)."""
        if not self.text:
            return "postgresql+psycopg://"
        if self.is_url:
            return "postgresql+psycopg://" + self.text[len("postgresql://") :]
        return "postgresql+psycopg://" + conninfo_url(self.text)[len("postgresql://") :]


def parse_connection_string(value: str | None) -> ConnectionString:
    """Parse ``value`` (None or empty: the libpq environment); ConnectionStringError when it is not one."""
    if not value or not value.strip():
        return ConnectionString("", is_url=False)
    value = value.strip()
    scheme = _SCHEME.match(value)
    if scheme is not None:
        for prefix in _DRIVER_PREFIXES:
            if value.startswith(prefix):
                value = "postgresql://" + value[len(prefix) :]
                break
        else:
            raise ConnectionStringError(
                f"connection string scheme '{scheme.group(1)}://' is not PostgreSQL: give a postgresql:// or "
                "postgres:// URL, or libpq keywords such as 'host=db.example dbname=crm user=dba'"
            )
    try:
        conninfo_to_dict(value)  # libpq's own parser: what it refuses, every command refuses alike
    except psycopg.ProgrammingError as error:
        reason = " ".join(str(error).split())
        raise ConnectionStringError(
            f"invalid connection string ({reason}): give a postgresql:// URL or libpq keywords such as "
            "'host=db.example dbname=crm user=dba'"
        ) from None
    return ConnectionString(value, is_url=scheme is not None)


def explicit_url(option: str | None) -> str | None:
    """The URL given by option or DATABASE_URL, or None when neither is set."""
    return option or os.environ.get("DATABASE_URL") or None


def libpq_conninfo(url: str | None) -> str:
    """A conninfo psycopg accepts; empty (libpq environment) when ``url`` is None."""
    return parse_connection_string(url).libpq


def sqlalchemy_url(url: str | None) -> str:
    """A SQLAlchemy URL on the psycopg 3 driver; bare ``postgresql+psycopg://`` uses libpq's environment."""
    return parse_connection_string(url).sqlalchemy


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
