"""Alembic, driven from Python with the project's migrations wherever the package is installed."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from agency_rls.cluster.database import sqlalchemy_url

#: This package's folder: env.py, script.py.mako and versions/ (the wheel ships them).
MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(url: str | None, *, role_prefix: str | None = None) -> Config:
    """An Alembic Config for ``url`` (None: libpq environment), optionally with a role prefix."""
    config = Config(stdout=sys.stdout)  # the stream of now, not of import time (tests capture it)
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    # '%' is ConfigParser's interpolation character; URLs may carry %2F.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    if role_prefix is not None:
        config.attributes["requested_role_prefix"] = role_prefix
    return config


def upgrade(
    url: str | None, revision: str = "head", *, role_prefix: str | None = None, sql: bool = False
) -> None:
    """``alembic upgrade``; ``sql`` prints the SQL instead of running it."""
    command.upgrade(alembic_config(url, role_prefix=role_prefix), revision, sql=sql)


def downgrade(url: str | None, revision: str, *, sql: bool = False) -> None:
    """``alembic downgrade``; at base the version table is dropped too (see env.py)."""
    command.downgrade(alembic_config(url), revision, sql=sql)


def current(url: str | None) -> None:
    """``alembic current``."""
    command.current(alembic_config(url), verbose=False)


def history(url: str | None) -> None:
    """``alembic history`` (needs no database)."""
    command.history(alembic_config(url), verbose=False)
