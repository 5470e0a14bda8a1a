"""Where the database is: one rule for every command.

An explicit ``--database-url`` wins, then ``DATABASE_URL``, then the libpq environment
(``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE``, ``PGPASSWORD``, ``PGSERVICE`` …), which an
empty conninfo picks up. URLs may be SQLAlchemy style (``postgresql+psycopg://``) or libpq
style (``postgresql://``); each consumer gets the form it needs.
"""

from __future__ import annotations

import os

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
