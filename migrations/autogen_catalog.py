"""What the security definition made in one database, read from its catalog, with role names as placeholders.

``agency-rls revision`` reads two scratch databases this way (one migrated to head by replaying the
recorded SQL, one built from ``rls_policies/sql/``) and writes the difference as SQL
(``agency_rls.migrations.autogen``). Every text is read with an empty ``search_path``, so the server
qualifies every name it prints (``public.contract``, ``agency_rls.insurer_id()``), and the
management roles of the database's prefix are written back as the placeholders the recorded SQL uses
(``{{owner}}``, ``{{owner_name}}``, ``{{prefix_literal}}``): the two databases, built with different
prefixes, compare equal when their definitions are, and the SQL written runs for any prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from agency_rls.rls_policies.definition import ROLE_KEYS
from agency_rls.rls_policies.names import ManagementRoles

#: The schemas the definition puts objects in.
SCHEMAS = ("public", "agency_rls")

#: A privilege on an object: (grantee, privilege, grantable); grantee is a placeholder, a role or PUBLIC.
AclItem = tuple[str, str, bool]


class Placeholders:
    """Management role names of one prefix, written as the placeholders of ``definition.render``."""

    def __init__(self, prefix: str) -> None:
        roles = ManagementRoles(prefix)
        self.prefix = prefix
        self.keys = {getattr(roles, key): key for key in ROLE_KEYS}
        names = "|".join(re.escape(name) for name in sorted(self.keys, key=len, reverse=True))
        self._literal = re.compile(rf"'({names})'")
        self._quoted = re.compile(rf'"({names})"')
        self._bare = re.compile(rf"(?<![\w$])({names})(?![\w$])")
        self._prefix_literal = re.compile(rf"'{re.escape(prefix)}'")

    def text(self, value: str) -> str:
        """``value`` with every management role name (literal or identifier) and the prefix as placeholders."""
        value = self._literal.sub(lambda m: "{{" + self.keys[m.group(1)] + "_name}}", value)
        value = self._quoted.sub(lambda m: "{{" + self.keys[m.group(1)] + "}}", value)
        value = self._bare.sub(lambda m: "{{" + self.keys[m.group(1)] + "}}", value)
        return self._prefix_literal.sub("{{prefix_literal}}", value)

    def leftover(self, value: str) -> bool:
        """Whether ``value`` still names the prefix (something no placeholder expresses)."""
        return self.prefix in value


@dataclass(frozen=True)
class Function:
    signature: str  # agency_rls.f(bigint[]) as regprocedure prints it
    oid: int
    definition: str  # CREATE OR REPLACE FUNCTION …, as pg_get_functiondef prints it
    result: str
    arguments: str
    kind: str
    owner: str
    acl: frozenset[AclItem]
    comment: str

    def same_shape(self, other: Function) -> bool:
        """Whether CREATE OR REPLACE can turn one into the other (same result, argument names, kind)."""
        return (self.result, self.arguments, self.kind) == (other.result, other.arguments, other.kind)


@dataclass(frozen=True)
class Policy:
    table: str
    name: str
    oid: int
    permissive: bool
    command: str
    roles: tuple[str, ...]
    using: str
    check: str

    def shape(self) -> tuple[object, ...]:
        return (self.permissive, self.command, self.roles, self.using, self.check)


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    attnum: int
    type: str
    not_null: bool
    default: str
    identity: str
    acl: frozenset[AclItem]

    def shape(self) -> tuple[object, ...]:
        return (self.type, self.not_null, self.default, self.identity)


@dataclass(frozen=True)
class Relation:
    name: str  # public.contract
    oid: int
    kind: str
    owner: str
    row_security: bool
    force_row_security: bool
    acl: frozenset[AclItem]
    comment: str


@dataclass(frozen=True)
class Dependent:
    """Something built from others (trigger, index, constraint): dropped and re-created as a whole."""

    table: str
    name: str
    oid: int
    definition: str
    kind: str = ""  # constraints: contype


@dataclass(frozen=True)
class Schema:
    name: str
    owner: str
    acl: frozenset[AclItem]
    comment: str


@dataclass
class DefinitionCatalog:
    """Everything of the definition in one database, keyed by what stays the same across databases."""

    schemas: dict[str, Schema] = field(default_factory=dict)
    relations: dict[str, Relation] = field(default_factory=dict)
    columns: dict[tuple[str, str], Column] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    policies: dict[tuple[str, str], Policy] = field(default_factory=dict)
    triggers: dict[tuple[str, str], Dependent] = field(default_factory=dict)
    indexes: dict[str, Dependent] = field(default_factory=dict)
    constraints: dict[tuple[str, str], Dependent] = field(default_factory=dict)
    roles: list[tuple[object, ...]] = field(default_factory=list)
    memberships: list[tuple[object, ...]] = field(default_factory=list)
    #: (dependent class, oid, sub id) -> the objects it depends on, same form (pg_depend, normal and auto).
    depends: dict[tuple[str, int, int], set[tuple[str, int, int]]] = field(default_factory=dict)

    def can_create_in(self, role: str, schema: str) -> bool:
        """Whether ``role`` (a placeholder or name) may create in ``schema`` here (owner or CREATE)."""
        found = self.schemas.get(schema)
        return found is not None and (found.owner == role or (role, "CREATE", False) in found.acl)


_ACL = """
    SELECT coalesce(pg_catalog.array_agg(ROW(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                             a.privilege_type, a.is_grantable)::text), '{{}}')
      FROM pg_catalog.aclexplode(coalesce({acl}, pg_catalog.acldefault({kind}, {owner}))) AS a
     WHERE a.grantee <> {owner}"""


_RELATION_KIND = "CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::\"char\""


def _acl(acl: str, kind: str, owner: str) -> str:
    return _ACL.format(acl=acl, kind=kind, owner=owner)


QUERIES = {
    "schemas": f"""
        SELECT n.nspname, n.nspowner::regrole::text, ({_acl("n.nspacl", "'n'", "n.nspowner")}),
               coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '')
          FROM pg_catalog.pg_namespace AS n WHERE n.nspname = ANY (%(schemas)s)""",
    "relations": f"""
        SELECT c.oid::regclass::text, c.oid::int8, c.relkind::text, c.relowner::regrole::text,
               c.relrowsecurity, c.relforcerowsecurity,
               ({_acl("c.relacl", _RELATION_KIND, "c.relowner")}),
               coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
          FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY (%(schemas)s) AND c.relname <> 'alembic_version' AND c.relkind <> 'i'""",
    "columns": f"""
        SELECT c.oid::regclass::text, a.attname::text, a.attnum::int, pg_catalog.format_type(a.atttypid, a.atttypmod),
               a.attnotnull, coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), ''),
               a.attidentity::text || a.attgenerated::text,
               CASE WHEN a.attacl IS NULL THEN '{{}}'
                    ELSE ({_acl("a.attacl", "'c'", "c.relowner")}) END
          FROM pg_catalog.pg_attribute AS a JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
          LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = ANY (%(schemas)s) AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version'
           AND a.attnum > 0 AND NOT a.attisdropped""",
    "functions": f"""
        SELECT p.oid::regprocedure::text, p.oid::int8, pg_catalog.pg_get_functiondef(p.oid),
               pg_catalog.pg_get_function_result(p.oid), pg_catalog.pg_get_function_arguments(p.oid),
               p.prokind::text, p.proowner::regrole::text, ({_acl("p.proacl", "'f'", "p.proowner")}),
               coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
          FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY (%(schemas)s)""",
    "policies": """
        SELECT p.polrelid::regclass::text, p.polname::text, p.oid::int8, p.polpermissive,
               CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                             WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
               ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE r::regrole::text END
                       FROM pg_catalog.unnest(p.polroles) AS r ORDER BY 1),
               coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), ''),
               coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
          FROM pg_catalog.pg_policy AS p JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
         WHERE c.relnamespace::regnamespace::text = ANY (%(schemas)s)""",
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname::text, t.oid::int8, pg_catalog.pg_get_triggerdef(t.oid)
          FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND c.relnamespace::regnamespace::text = ANY (%(schemas)s)""",
    "indexes": """
        SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, i.indexrelid::int8,
               pg_catalog.pg_get_indexdef(i.indexrelid)
          FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid
         WHERE c.relnamespace::regnamespace::text = ANY (%(schemas)s) AND c.relname <> 'alembic_version'
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint AS k WHERE k.conindid = i.indexrelid
                                                                    AND k.contype IN ('p', 'u', 'x'))""",
    "constraints": """
        SELECT k.conrelid::regclass::text, k.conname::text, k.oid::int8, pg_catalog.pg_get_constraintdef(k.oid),
               k.contype::text
          FROM pg_catalog.pg_constraint AS k JOIN pg_catalog.pg_class AS c ON c.oid = k.conrelid
         WHERE c.relnamespace::regnamespace::text = ANY (%(schemas)s) AND c.relname <> 'alembic_version'
           AND k.contype <> 'n'""",
    "roles": """
        SELECT r.rolname::text, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
               r.rolreplication, r.rolbypassrls,
               coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), '')
          FROM pg_catalog.pg_roles AS r WHERE pg_catalog.starts_with(r.rolname, %(prefix)s) ORDER BY 1""",
    "memberships": """
        SELECT g.rolname::text, m.rolname::text, a.admin_option
          FROM pg_catalog.pg_auth_members AS a
          JOIN pg_catalog.pg_roles AS g ON g.oid = a.roleid JOIN pg_catalog.pg_roles AS m ON m.oid = a.member
         WHERE pg_catalog.starts_with(g.rolname, %(prefix)s) OR pg_catalog.starts_with(m.rolname, %(prefix)s)
         ORDER BY 1, 2""",
    "depends": """
        SELECT d.classid::regclass::text, d.objid::int8, d.objsubid,
               d.refclassid::regclass::text, d.refobjid::int8, d.refobjsubid
          FROM pg_catalog.pg_depend AS d
         WHERE d.deptype IN ('n', 'a')
           AND d.classid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_policy'::regclass,
                             'pg_catalog.pg_trigger'::regclass, 'pg_catalog.pg_class'::regclass,
                             'pg_catalog.pg_constraint'::regclass)
           AND d.objid >= 16384""",
}

_ACL_ITEM = re.compile(r"^\((.*),(\w[\w ]*),([tf])\)$")


def _acl_items(texts: list[str], role: Callable[[str], str]) -> frozenset[AclItem]:
    """Parse ``(grantee,PRIVILEGE,t)`` row texts (grantee may be double-quoted) into placeholder items."""
    items = set()
    for text in texts:
        match = _ACL_ITEM.match(text)
        assert match is not None, text
        grantee = match.group(1)
        if grantee.startswith('"') and grantee.endswith('"'):
            grantee = grantee[1:-1].replace('""', '"')
        items.add((role(grantee), match.group(2), match.group(3) == "t"))
    return frozenset(items)


def read_catalog(conn: psycopg.Connection[Any], prefix: str) -> DefinitionCatalog:
    """The definition's objects in the database of ``conn``, built with role prefix ``prefix``."""
    names = Placeholders(prefix)
    conn.execute("SET search_path = ''")  # the server then qualifies every name it prints
    args = {"schemas": list(SCHEMAS), "prefix": prefix}

    def rows(query: str) -> list[tuple[Any, ...]]:
        return conn.execute(QUERIES[query], args).fetchall()  # type: ignore[call-overload]

    t = names.text
    row = conn.execute("SELECT current_user::text").fetchone()
    assert row is not None
    installer = str(row[0])

    def role(name: str) -> str:
        """A role name as SQL: placeholder, CURRENT_USER for whoever applies the SQL, or the name."""
        return "CURRENT_USER" if name in (installer, f'"{installer}"') else t(name)

    found = DefinitionCatalog()
    for name, owner, acl, comment in rows("schemas"):
        found.schemas[name] = Schema(name, role(owner), _acl_items(acl, role), comment)
    for name, oid, kind, owner, rls, force, acl, comment in rows("relations"):
        found.relations[name] = Relation(
            name, oid, kind, role(owner), rls, force, _acl_items(acl, role), comment
        )
    for table, name, attnum, type_, not_null, default, identity, acl in rows("columns"):
        found.columns[(table, name)] = Column(
            table, name, attnum, type_, not_null, t(default), identity, _acl_items(acl, role)
        )
    for signature, oid, definition, result, arguments, kind, owner, acl, comment in rows("functions"):
        found.functions[signature] = Function(
            signature,
            oid,
            t(definition),
            result,
            arguments,
            kind,
            role(owner),
            _acl_items(acl, role),
            t(comment),
        )
    for table, name, oid, permissive, command, roles, using, check in rows("policies"):
        found.policies[(table, name)] = Policy(
            table, name, oid, permissive, command, tuple(sorted(role(r) for r in roles)), t(using), t(check)
        )
    for table, name, oid, definition in rows("triggers"):
        found.triggers[(table, name)] = Dependent(table, name, oid, t(definition))
    for table, name, oid, definition in rows("indexes"):
        found.indexes[name] = Dependent(table, name, oid, t(definition))
    for table, name, oid, definition, kind in rows("constraints"):
        found.constraints[(table, name)] = Dependent(table, name, oid, t(definition), kind)
    row = conn.execute("SELECT pg_catalog.current_database()").fetchone()
    assert row is not None
    found.roles = [
        tuple(t(v).replace(str(row[0]), "<db>") if isinstance(v, str) else v for v in role)
        for role in rows("roles")
    ]
    found.memberships = [tuple(t(v) if isinstance(v, str) else v for v in row) for row in rows("memberships")]
    for cls, oid, sub, refcls, refoid, refsub in rows("depends"):
        found.depends.setdefault((cls, oid, sub), set()).add((refcls, refoid, refsub))
    conn.execute("RESET search_path")
    return found
