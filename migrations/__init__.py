"""Alembic environment and revisions of agency-rls (``env.py``, ``versions/``)."""
