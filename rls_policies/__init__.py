"""Roles, scope functions and row level security policies: the scope rules as SQL.

- ``names``: role naming, the prefix, validation of names;
- ``definition``: the SQL files under ``sql/`` rendered for one prefix;
- ``provision``: make principal roles match the ``principal`` table.
"""
