"""SQLAlchemy table definitions of the agency domain (see ``agency_rls.schema.tables``)."""

from agency_rls.schema.tables import ALL_TABLES, PROTECTED_TABLES, metadata

__all__ = ["ALL_TABLES", "PROTECTED_TABLES", "metadata"]
