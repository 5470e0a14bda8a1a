"""agency-rls for your own security tests: a pytest plugin and ``assert_visible``.

The plugin (``agency_rls.pytest_plugin.plugin``) is registered through the ``pytest11`` entry point, so
installing agency-rls is enough: its ``agency_rls_*`` fixtures give a migrated test database,
ways to load rows into it, and connections or SQLAlchemy sessions acting as a principal.
``assert_visible`` compares what a principal reads with what it must read.

Importing this package is cheap on purpose (no database driver, no SQLAlchemy): pytest imports it
in every run of a project that has agency-rls installed, whether or not a test uses it.
"""

from agency_rls.pytest_plugin.assertions import DEFAULT_KEYS, VisibilityMismatch, assert_visible

__all__ = ["DEFAULT_KEYS", "VisibilityMismatch", "assert_visible"]
