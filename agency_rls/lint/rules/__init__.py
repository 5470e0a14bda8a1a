"""The lint rules: one module per rule (``ID``, ``LEVEL``, ``TITLE``, ``SQL``, a docstring with a
bad and a good example); ``agency_rls.lint.registry`` finds them. Modules starting with ``_`` are
not rules."""
