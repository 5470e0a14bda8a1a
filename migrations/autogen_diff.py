"""The SQL that moves one definition catalog to another (``agency-rls revision``'s upgrade and downgrade).

Like alembic_utils does for its entities, for this project's whole definition:

- functions: ``CREATE OR REPLACE`` when the result, the argument names and the kind stay; dropped and
  created again otherwise (with whatever depends on them);
- policies, triggers, indexes and constraints that changed: dropped and created again;
- tables and columns the definition adds or removes (a column's type, NOT NULL and default in place);
- row level security flags, owners, grants (the difference of each object's privileges) and comments.

Whatever depends on an object dropped here (a policy calling a function whose signature changes, an
index on a column that goes) is found in ``pg_depend``, dropped first and created again from the new
definition. What this does not write (roles, schemas, memberships, views) is named by
:func:`unsupported`; ``agency-rls revision`` then refuses and asks for a revision written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agency_rls.migrations.autogen_catalog import (
    AclItem,
    Column,
    DefinitionCatalog,
    Dependent,
    Relation,
)

#: pg_depend's class of each kind of object this module drops and creates.
_CLASS = {
    "function": "pg_proc",
    "policy": "pg_policy",
    "trigger": "pg_trigger",
    "constraint": "pg_constraint",
    "index": "pg_class",
    "table": "pg_class",
}

#: A fresh function grants EXECUTE to PUBLIC (acldefault); a fresh table or column grants nothing.
_FRESH_FUNCTION_ACL: frozenset[AclItem] = frozenset({("PUBLIC", "EXECUTE", False)})

MEMBERSHIPS_UP = """\
-- A DBA without SUPERUSER (managed PostgreSQL) acts through the management roles it created, as
-- roles.sql does: it joins the owner, the helper and the loader, and leaves the helper at the end.
DO $members$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('GRANT %I, %I, %I TO CURRENT_USER',
                                  {{owner_name}}, {{helper_name}}, {{loader_name}});
    END IF;
END
$members$;"""

MEMBERSHIPS_DOWN = """\
DO $members$
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = CURRENT_USER) THEN
        EXECUTE pg_catalog.format('REVOKE %I FROM CURRENT_USER', {{helper_name}});
    END IF;
END
$members$;"""


def unsupported(old: DefinitionCatalog, new: DefinitionCatalog) -> list[str]:
    """Differences this module does not write SQL for (each named in a few words)."""
    found = []
    if set(old.schemas) != set(new.schemas) or any(
        old.schemas[n].owner != new.schemas[n].owner for n in old.schemas if n in new.schemas
    ):
        found.append("schemas")
    if old.roles != new.roles:
        found.append("management roles or their attributes")
    if old.memberships != new.memberships:
        found.append("role memberships")
    for name in set(old.relations) ^ set(new.relations):
        relation = old.relations.get(name) or new.relations[name]
        if relation.kind not in ("r", "p", "S"):
            found.append(f"relation {name} (kind {relation.kind})")
        elif relation.kind == "S" and not _owned_sequence(relation, old if name in old.relations else new):
            found.append(f"sequence {name}")
    for key in set(old.columns) & set(new.columns):
        if old.columns[key].identity != new.columns[key].identity:
            found.append(f"identity or generation of column {key[0]}.{key[1]}")
    for key in set(new.columns) - set(old.columns):
        if new.columns[key].identity:
            found.append(f"identity or generated column {key[0]}.{key[1]}")
    return sorted(found)


def _owned_sequence(sequence: Relation, catalog: DefinitionCatalog) -> bool:
    """An identity or serial sequence: created and dropped with its column."""
    return any(
        cls == "pg_class" and ref[0] == "pg_class" and ref[2] > 0
        for (cls, oid, _sub), refs in catalog.depends.items()
        if oid == sequence.oid
        for ref in refs
    )


class _Plan:
    """The statements of one direction, by phase, in the order they run."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str]]] = []

    def add(self, title: str, statements: Iterable[str]) -> None:
        statements = list(statements)
        if statements:
            self.sections.append((title, statements))

    def text(self) -> str:
        return "\n\n".join(f"-- {title}\n" + "\n".join(statements) for title, statements in self.sections)


def migration_sql(old: DefinitionCatalog, new: DefinitionCatalog) -> str:
    """The SQL that turns a database holding ``old`` into one holding ``new`` ('' when they are the same)."""
    plan = _Plan()
    o, n = old, new

    dropped_tables = sorted(set(o.relations) - set(n.relations), key=lambda k: -o.relations[k].oid)
    dropped_tables = [k for k in dropped_tables if o.relations[k].kind in ("r", "p")]
    added_tables = sorted(
        (k for k in set(n.relations) - set(o.relations) if n.relations[k].kind in ("r", "p")),
        key=lambda k: n.relations[k].oid,
    )
    in_dropped_table = {o.relations[k].oid for k in dropped_tables}

    # What must go: removed or changed beyond what ALTER can do.
    functions_gone = {
        k for k in o.functions if k not in n.functions or not o.functions[k].same_shape(n.functions[k])
    }
    functions_replaced = {
        k
        for k in set(o.functions) & set(n.functions) - functions_gone
        if o.functions[k].definition != n.functions[k].definition
    }
    policies_gone = {
        k for k in o.policies if k not in n.policies or o.policies[k].shape() != n.policies[k].shape()
    }
    triggers_gone = {k for k in o.triggers if o.triggers[k].definition != _definition(n.triggers.get(k))}
    indexes_gone = {k for k in o.indexes if o.indexes[k].definition != _definition(n.indexes.get(k))}
    constraints_gone = {
        k for k in o.constraints if o.constraints[k].definition != _definition(n.constraints.get(k))
    }
    columns_gone = {k for k in o.columns if k not in n.columns and k[0] not in dropped_tables}
    columns_retyped = {k for k in set(o.columns) & set(n.columns) if o.columns[k].type != n.columns[k].type}

    # Everything that depends on them goes too (and comes back from the new definition).
    by_oid: dict[tuple[str, int, int], tuple[str, object]] = {}
    for k, f in o.functions.items():
        by_oid[("pg_proc", f.oid, 0)] = ("function", k)
    for k, p in o.policies.items():
        by_oid[("pg_policy", p.oid, 0)] = ("policy", k)
    for k, t in o.triggers.items():
        by_oid[("pg_trigger", t.oid, 0)] = ("trigger", k)
    for k, i in o.indexes.items():
        by_oid[("pg_class", i.oid, 0)] = ("index", k)
    for k, c in o.constraints.items():
        by_oid[("pg_constraint", c.oid, 0)] = ("constraint", k)
    seeds: set[tuple[str, int, int]] = set()
    seeds |= {("pg_proc", o.functions[k].oid, 0) for k in functions_gone}
    seeds |= {
        ("pg_class", o.relations[k[0]].oid, o.columns[k].attnum) for k in columns_gone | columns_retyped
    }
    seeds |= {("pg_class", o.relations[k].oid, 0) for k in dropped_tables}
    gone: dict[str, set[object]] = {
        "function": set(functions_gone),
        "policy": set(policies_gone),
        "trigger": set(triggers_gone),
        "index": set(indexes_gone),
        "constraint": set(constraints_gone),
    }
    seeds |= {oid for oid, (kind, key) in by_oid.items() if key in gone[kind]}
    frontier = set(seeds)
    while frontier:
        # A dependent of a whole table (sub id 0) that goes depends on each of its columns too.
        reached = {
            dependent
            for dependent, refs in o.depends.items()
            if dependent not in seeds
            and any(ref in frontier or (ref[0], ref[1], 0) in frontier for ref in refs)
        }
        frontier = reached
        seeds |= reached
        for dependent in reached:
            if dependent in by_oid:
                kind, key = by_oid[dependent]
                gone[kind].add(key)

    def table_goes(table: str) -> bool:
        relation = o.relations.get(table)
        return relation is not None and relation.oid in in_dropped_table

    plan.add("Taking the management roles (a DBA without SUPERUSER)", [MEMBERSHIPS_UP])
    plan.add(
        "Policies that change or go",
        (f"DROP POLICY {_ident(k[1])} ON {k[0]};" for k in sorted(gone["policy"]) if not table_goes(k[0])),
    )
    plan.add(
        "Triggers that change or go",
        (f"DROP TRIGGER {_ident(k[1])} ON {k[0]};" for k in sorted(gone["trigger"]) if not table_goes(k[0])),
    )
    plan.add(
        "Constraints that change or go",
        (
            f"ALTER TABLE {k[0]} DROP CONSTRAINT {_ident(k[1])};"
            for k in sorted(gone["constraint"], key=lambda k: (o.constraints[k].kind != "f", k))
            if not table_goes(k[0])
        ),
    )
    plan.add(
        "Indexes that change or go",
        (f"DROP INDEX {k};" for k in sorted(gone["index"]) if not table_goes(o.indexes[k].table)),
    )
    plan.add(
        "Functions that go, or whose result or arguments change",
        (f"DROP FUNCTION {k};" for k in sorted(gone["function"], key=lambda k: -o.functions[k].oid)),
    )
    plan.add(
        "Columns that go", (f"ALTER TABLE {t} DROP COLUMN {_ident(c)};" for t, c in sorted(columns_gone))
    )
    plan.add("Tables that go", (f"DROP TABLE {k};" for k in dropped_tables))

    plan.add("Tables", (_create_table(k, n) for k in added_tables))
    plan.add(
        "Columns",
        (
            _add_column(n.columns[k])
            for k in sorted(set(n.columns) - set(o.columns), key=lambda k: (k[0], n.columns[k].attnum))
            if k[0] not in added_tables
        ),
    )
    plan.add(
        "Columns that change",
        (
            statement
            for k in sorted(set(o.columns) & set(n.columns))
            for statement in _alter_column(o.columns[k], n.columns[k])
        ),
    )

    recreated_functions = {k for k in n.functions if k not in o.functions or k in gone["function"]}
    plan.add(
        "Functions",
        (
            n.functions[k].definition.rstrip() + ";\n"  # a blank line after each
            for k in sorted(recreated_functions | functions_replaced, key=lambda k: n.functions[k].oid)
        ),
    )
    plan.add(
        "Indexes",
        (
            _definition(n.indexes[k]) + ";"
            for k in sorted(n.indexes, key=lambda k: n.indexes[k].oid)
            if k not in o.indexes or k in gone["index"]
        ),
    )
    plan.add(
        "Constraints",
        (
            f"ALTER TABLE {k[0]} ADD CONSTRAINT {_ident(k[1])} {n.constraints[k].definition};"
            for k in sorted(n.constraints, key=lambda k: (n.constraints[k].kind == "f", n.constraints[k].oid))
            if k not in o.constraints or k in gone["constraint"]
        ),
    )
    plan.add(
        "Triggers",
        (
            _definition(n.triggers[k]) + ";"
            for k in sorted(n.triggers, key=lambda k: n.triggers[k].oid)
            if k not in o.triggers or k in gone["trigger"]
        ),
    )
    plan.add(
        "Row level security",
        (
            statement
            for k in sorted(n.relations)
            if n.relations[k].kind in ("r", "p")
            for statement in _row_security(o.relations.get(k), n.relations[k])
        ),
    )
    plan.add(
        "Policies",
        (
            _create_policy(n, k)
            for k in sorted(n.policies, key=lambda k: n.policies[k].oid)
            if k not in o.policies or k in gone["policy"]
        ),
    )

    # Owners: of what is new (it belongs to whoever ran this), and what changed hands.
    owners: list[str] = []
    for k in sorted(n.relations, key=lambda k: n.relations[k].oid):
        relation = n.relations[k]
        if relation.kind in ("r", "p") and (k in added_tables or o.relations[k].owner != relation.owner):
            owners += _owner(n, "TABLE", k, relation.owner)
    for k in sorted(n.functions, key=lambda k: n.functions[k].oid):
        function = n.functions[k]
        if k in recreated_functions or o.functions[k].owner != function.owner:
            owners += _owner(n, "FUNCTION", k, function.owner)
    for name in sorted(n.schemas):
        if name in o.schemas and o.schemas[name].owner != n.schemas[name].owner:
            owners.append(f"ALTER SCHEMA {_ident(name)} OWNER TO {n.schemas[name].owner};")
    plan.add("Owners", _merge_schema_grants(owners))

    grants: list[str] = []
    for name in sorted(n.schemas):
        grants += _acl_change(
            f"SCHEMA {_ident(name)}",
            o.schemas[name].acl if name in o.schemas else frozenset(),
            n.schemas[name].acl,
        )
    for k in sorted(n.relations):
        relation = n.relations[k]
        what = "SEQUENCE" if relation.kind == "S" else "TABLE"
        before = o.relations[k].acl if k in o.relations else frozenset()
        grants += _acl_change(f"{what} {k}", before, relation.acl)
    for k in sorted(n.columns):
        column = n.columns[k]
        before = o.columns[k].acl if k in o.columns else frozenset()
        grants += _acl_change(f"TABLE {k[0]}", before, column.acl, column=column.name)
    for k in sorted(n.functions):
        before = _FRESH_FUNCTION_ACL if k in recreated_functions else o.functions[k].acl
        grants += _acl_change(f"FUNCTION {k}", before, n.functions[k].acl)
    plan.add("Privileges", grants)

    comments: list[str] = []
    for name in sorted(n.schemas):
        if o.schemas.get(name) is None or o.schemas[name].comment != n.schemas[name].comment:
            comments += _comment(f"SCHEMA {_ident(name)}", n.schemas[name].comment, name not in o.schemas)
    for k in sorted(n.relations):
        if n.relations[k].kind in ("r", "p"):
            before = o.relations[k].comment if k in o.relations else ""
            if before != n.relations[k].comment:
                comments += _comment(f"TABLE {k}", n.relations[k].comment, k in added_tables)
    for k in sorted(n.functions):
        before = "" if k in recreated_functions else o.functions[k].comment
        if before != n.functions[k].comment:
            comments += _comment(f"FUNCTION {k}", n.functions[k].comment, k in recreated_functions)
    plan.add("Comments", comments)

    if len(plan.sections) == 1:  # nothing but the memberships
        return ""
    plan.add("Leaving the helper again (a DBA without SUPERUSER)", [MEMBERSHIPS_DOWN])
    return plan.text() + "\n"


def _definition(item: Dependent | None) -> str | None:
    return None if item is None else item.definition


def _ident(name: str) -> str:
    """A name as an identifier: quoted only when it must be (as the server prints them)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_table(name: str, catalog: DefinitionCatalog) -> str:
    columns = sorted((c for c in catalog.columns.values() if c.table == name), key=lambda c: c.attnum)
    body = ",\n".join(f"    {_column_spec(c)}" for c in columns)
    return f"CREATE TABLE {name} (\n{body}\n);" if columns else f"CREATE TABLE {name} ();"


def _column_spec(column: Column) -> str:
    spec = f"{_ident(column.name)} {column.type}"
    if column.not_null:
        spec += " NOT NULL"
    if column.default:
        spec += f" DEFAULT {column.default}"
    return spec


def _add_column(column: Column) -> str:
    return f"ALTER TABLE {column.table} ADD COLUMN {_column_spec(column)};"


def _alter_column(old: Column, new: Column) -> list[str]:
    prefix = f"ALTER TABLE {new.table} ALTER COLUMN {_ident(new.name)}"
    statements = []
    if old.default and old.default != new.default:
        statements.append(f"{prefix} DROP DEFAULT;")
    if old.type != new.type:
        statements.append(f"{prefix} TYPE {new.type} USING {_ident(new.name)}::{new.type};")
    if new.default and old.default != new.default:
        statements.append(f"{prefix} SET DEFAULT {new.default};")
    if old.not_null != new.not_null:
        statements.append(f"{prefix} {'SET' if new.not_null else 'DROP'} NOT NULL;")
    return statements


def _row_security(old: Relation | None, new: Relation) -> list[str]:
    statements = []
    if (old.row_security if old else False) != new.row_security:
        statements.append(
            f"ALTER TABLE {new.name} {'ENABLE' if new.row_security else 'DISABLE'} ROW LEVEL SECURITY;"
        )
    if (old.force_row_security if old else False) != new.force_row_security:
        statements.append(
            f"ALTER TABLE {new.name} {'' if new.force_row_security else 'NO '}FORCE ROW LEVEL SECURITY;"
        )
    return statements


def _create_policy(catalog: DefinitionCatalog, key: tuple[str, str]) -> str:
    policy = catalog.policies[key]
    text = (
        f"CREATE POLICY {_ident(policy.name)} ON {policy.table}\n"
        f"    AS {'PERMISSIVE' if policy.permissive else 'RESTRICTIVE'} FOR {policy.command}"
        f" TO {', '.join(policy.roles)}"
    )
    if policy.using:
        text += f"\n    USING ({policy.using})"
    if policy.check:
        text += f"\n    WITH CHECK ({policy.check})"
    return text + ";"


def _owner(catalog: DefinitionCatalog, what: str, name: str, owner: str) -> list[str]:
    """ALTER … OWNER TO, with CREATE on the schema for the new owner for the moment if it lacks it.

    A new owner needs CREATE on the object's schema unless a superuser hands the object over (a DBA
    without SUPERUSER), as in grants.sql: granted for the hand-over only.
    """
    schema = name.split(".", 1)[0]
    statement = f"ALTER {what} {name} OWNER TO {owner};"
    if owner == "CURRENT_USER" or catalog.can_create_in(owner, schema):
        return [statement]
    return [
        f"GRANT CREATE ON SCHEMA {_ident(schema)} TO {owner};",
        statement,
        f"REVOKE CREATE ON SCHEMA {_ident(schema)} FROM {owner};",
    ]


def _merge_schema_grants(statements: list[str]) -> list[str]:
    """Drop a REVOKE CREATE immediately followed by the same GRANT CREATE (one hand-over for many objects)."""
    merged: list[str] = []
    for statement in statements:
        if (
            merged
            and statement.startswith("GRANT CREATE ON SCHEMA ")
            and merged[-1]
            == statement.replace("GRANT CREATE", "REVOKE CREATE", 1).replace(" TO ", " FROM ", 1)
        ):
            merged.pop()
            continue
        merged.append(statement)
    return merged


def _acl_change(
    target: str, before: frozenset[AclItem], after: frozenset[AclItem], *, column: str = ""
) -> list[str]:
    """REVOKE what goes, GRANT what comes, one statement per grantee and grant option."""
    on = f"ON {target}"
    cols = f" ({_ident(column)})" if column else ""
    statements = []
    for verb, items, word in (("REVOKE", before - after, "FROM"), ("GRANT", after - before, "TO")):
        groups: dict[tuple[str, bool], list[str]] = {}
        for grantee, privilege, grantable in sorted(items):
            groups.setdefault((grantee, grantable), []).append(privilege)
        for (grantee, grantable), privileges in sorted(groups.items()):
            listed = ", ".join(f"{p}{cols}" for p in privileges)
            option = " WITH GRANT OPTION" if verb == "GRANT" and grantable else ""
            statements.append(f"{verb} {listed} {on} {word} {grantee}{option};")
    return statements


def _comment(target: str, text: str, new: bool) -> list[str]:
    if new and not text:
        return []
    return [f"COMMENT ON {target} IS {_literal(text) if text else 'NULL'};"]
