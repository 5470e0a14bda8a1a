"""SQLAlchemy table definitions of the agency domain (see ``schema.tables``)."""

from schema.tables import ALL_TABLES, PROTECTED_TABLES, metadata

__all__ = ["ALL_TABLES", "PROTECTED_TABLES", "metadata"]
