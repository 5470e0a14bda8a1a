"""agency-rls: PostgreSQL row level security that keeps insurance agencies inside their scope.

Everything the project installs lives in this one namespace, so that an install never collides
with a user's own ``schema``, ``scripts`` or ``migrations``. The rooms, imports pointing down:

- ``agency_rls.schema`` (repository folder ``schema/``): the domain tables;
- ``agency_rls.rls_policies`` (``rls_policies/``): roles, scope functions, policies as SQL, the
  definition renderer, provisioning;
- ``agency_rls.migrations`` (``migrations/``): the Alembic environment, the SQL each revision
  recorded, and ``runner`` (Alembic driven from Python);
- ``agency_rls.reference_model``: the scope rules again in Python, worlds, scenario files;
- ``agency_rls.backend``: acting as one principal per transaction (psycopg pool, SQLAlchemy);
- ``agency_rls.cluster``: throwaway PostgreSQL clusters, connection strings, scratch databases;
- ``agency_rls.checks``: check, matrix, demo, benchmarks: plain functions the CLI and the
  pytest plugin share;
- ``agency_rls.pytest_plugin``: fixtures and ``assert_visible``;
- ``agency_rls.scripts`` (``scripts/``): the ``agency-rls`` command line, arguments and output only;
- ``agency_rls.scenarios`` (``scenarios/``): the shipped scenario files.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agency-rls")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
