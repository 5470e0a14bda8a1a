"""What the ``agency-rls`` command line shares between its commands, kept out of ``scripts/cli.py``.

- ``terminal``: consoles and tables that never cut a principal's name, progress bars only on a
  terminal, a quiet exit on a broken pipe, the confirmation of destructive commands;
- ``migration_report``: what ``migrate``, ``downgrade``, ``current`` and ``history`` print.
"""
