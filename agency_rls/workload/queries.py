"""The bench's query mix: each query as the application writes it under row level security, and the
same rule hand-written over the base tables ("H"), for one viewer.

Why two texts per query: the RLS text is the plain query an application sends while acting as a
principal (``SELECT … FROM contract WHERE …``); the database adds the scope. The hand-written text
is the best explicit query an expert would write for the same rows *without* row level security:
the rules of ``scope-rules.md`` as joins, ``EXISTS`` and ``IN`` over ``contract_handler``,
``entrustment`` and ``supervision``, with the viewer's agency or insurer folded in as literals. It
never reads how the policies are written, so it is both the speed reference and an independent
check of the rows (the bench compares every pair).

Reading of the rules (``scope-rules.md``), "valid" meaning ``valid_from <= now() AND (valid_to IS
NULL OR now() < valid_to)``:

- agency A sees contract C iff a valid entrustment links A to C's insurer and a valid handler link
  ties C to A or to an agency A currently supervises (not transitive); a restricted principal
  (seconded staff of insurer N) also needs ``C.insurer_id = N``;
- A sees customer P iff A sees a contract whose policyholder or insured is P, or (unrestricted
  only) A registered P as a prospect;
- A sees notice N iff A is entrusted by N's insurer, N is addressed to A or to an agency currently
  supervising A, and A sees N's contract and customer when it names them (restricted: of N only);
- insurer I sees its own contracts, their policyholders and insureds, the notices it issued, the
  handler rows of its contracts;
- master data: A sees its own supervision rows and, for agencies it currently supervises, their
  ``agency`` row; a restricted principal sees no supervision row.

One shortcut an expert takes, stated here: ``contract_handler.insurer_id`` is used as the handled
contract's insurer. The schema keeps it exact (a foreign key ``(contract_id, insurer_id)`` to
``contract (id, insurer_id)`` when it is set, and a trigger that sets it); the bench warns when a
handler row has none (a load with triggers off that ``agency-rls provision`` has not repaired yet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import sql

__all__ = [
    "PAGE",
    "QUERIES",
    "Query",
    "Viewer",
    "contract_in_scope",
    "contract_visible",
    "customer_ids_cte",
    "customer_visible",
    "deep_offset",
    "query_names",
    "valid",
    "visible_contract_ids",
]

#: Rows per page of the list queries.
PAGE = 50


@dataclass(frozen=True)
class Viewer:
    """Whom a principal acts for, from its ``principal`` row."""

    kind: Literal["agency", "insurer"]
    agency_id: int | None = None
    insurer_id: int | None = None  # agency principal: its restriction (seconded staff); insurer: itself

    @property
    def restricted(self) -> bool:
        """An agency principal restricted to one insurer."""
        return self.kind == "agency" and self.insurer_id is not None


def valid(alias: str) -> sql.Composable:
    """``alias`` is valid now (the transaction's ``now()``)."""
    return sql.SQL("{t}.valid_from <= now() AND ({t}.valid_to IS NULL OR now() < {t}.valid_to)").format(
        t=sql.Identifier(alias)
    )


def _lit(value: int | None) -> sql.Composable:
    assert value is not None
    return sql.Literal(int(value))


def _entrusted_insurers(viewer: Viewer) -> sql.Composable:
    """A subquery of the insurers validly entrusting the viewer's agency (restricted: ∩ {N})."""
    restriction = (
        sql.SQL(" AND e.insurer_id = {n}").format(n=_lit(viewer.insurer_id))
        if viewer.restricted
        else sql.SQL("")
    )
    return sql.SQL(
        "SELECT e.insurer_id FROM public.entrustment AS e WHERE e.agency_id = {a} AND {valid}{restriction}"
    ).format(a=_lit(viewer.agency_id), valid=valid("e"), restriction=restriction)


def _scope_agencies(viewer: Viewer) -> sql.Composable:
    """A subquery of the agency and the agencies it currently supervises (not transitive)."""
    return sql.SQL(
        "SELECT {a}::bigint UNION SELECT s.working_agency_id FROM public.supervision AS s"
        " WHERE s.supervising_agency_id = {a} AND {valid}"
    ).format(a=_lit(viewer.agency_id), valid=valid("s"))


def visible_contract_ids(viewer: Viewer) -> sql.Composable:
    """A subquery listing the ids of the contracts ``viewer`` sees (duplicates possible)."""
    if viewer.kind == "insurer":
        return sql.SQL("SELECT vc.id FROM public.contract AS vc WHERE vc.insurer_id = {i}").format(
            i=_lit(viewer.insurer_id)
        )
    return sql.SQL(
        "SELECT h.contract_id FROM public.contract_handler AS h"
        " WHERE h.agency_id IN ({agencies}) AND {valid} AND h.insurer_id IN ({insurers})"
    ).format(agencies=_scope_agencies(viewer), valid=valid("h"), insurers=_entrusted_insurers(viewer))


def contract_in_scope(viewer: Viewer, alias: str) -> sql.Composable:
    """Set form: contract ``alias`` is among the visible ones (a semi-join the planner may turn either way)."""
    c = sql.Identifier(alias)
    if viewer.kind == "insurer":
        return sql.SQL("{c}.insurer_id = {i}").format(c=c, i=_lit(viewer.insurer_id))
    return sql.SQL("{c}.id IN ({ids})").format(c=c, ids=visible_contract_ids(viewer))


def contract_visible(viewer: Viewer, alias: str) -> sql.Composable:
    """Per-row form: ``viewer`` sees contract ``alias`` (spec columns only: the contract's own insurer)."""
    c = sql.Identifier(alias)
    if viewer.kind == "insurer":
        return sql.SQL("{c}.insurer_id = {i}").format(c=c, i=_lit(viewer.insurer_id))
    restriction = (
        sql.SQL(" AND {c}.insurer_id = {n}").format(c=c, n=_lit(viewer.insurer_id))
        if viewer.restricted
        else sql.SQL("")
    )
    return sql.SQL(
        "EXISTS (SELECT FROM public.entrustment AS e WHERE e.agency_id = {a} AND e.insurer_id = {c}.insurer_id"
        " AND {valid_e})"
        " AND EXISTS (SELECT FROM public.contract_handler AS h WHERE h.contract_id = {c}.id AND {valid_h}"
        " AND h.agency_id IN ({agencies})){restriction}"
    ).format(
        a=_lit(viewer.agency_id),
        c=c,
        valid_e=valid("e"),
        valid_h=valid("h"),
        agencies=_scope_agencies(viewer),
        restriction=restriction,
    )


def customer_visible(viewer: Viewer, alias: str) -> sql.Composable:
    """Per-row form: ``viewer`` sees customer ``alias``."""
    p = sql.Identifier(alias)
    prospect = (
        sql.SQL("{p}.registered_by_agency_id = {a} OR ").format(p=p, a=_lit(viewer.agency_id))
        if viewer.kind == "agency" and not viewer.restricted
        else sql.SQL("")
    )
    return sql.SQL(
        "({prospect}EXISTS (SELECT FROM public.contract AS pc WHERE pc.policyholder_id = {p}.id AND {visible})"
        " OR EXISTS (SELECT FROM public.contract AS pc WHERE pc.insured_id = {p}.id AND {visible}))"
    ).format(prospect=prospect, p=p, visible=contract_visible(viewer, "pc"))


def customer_ids_cte(viewer: Viewer) -> sql.Composable:
    """``WITH`` items ending in ``ids (id)``: the customers ``viewer`` sees (set form)."""
    prospects = (
        sql.SQL(" UNION SELECT r.id FROM public.customer AS r WHERE r.registered_by_agency_id = {a}").format(
            a=_lit(viewer.agency_id)
        )
        if viewer.kind == "agency" and not viewer.restricted
        else sql.SQL("")
    )
    return sql.SQL(
        "vcp AS MATERIALIZED (SELECT c.policyholder_id, c.insured_id FROM public.contract AS c WHERE {scope}),"
        " ids AS (SELECT vcp.policyholder_id AS id FROM vcp UNION SELECT vcp.insured_id FROM vcp{prospects})"
    ).format(scope=contract_in_scope(viewer, "c"), prospects=prospects)


def deep_offset(visible: int) -> int:
    """A deep page: the last full page at or below 90% of the visible rows (0 for small sets)."""
    return max(0, (visible * 9 // 10) // PAGE * PAGE)


# -- the mix ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One query of the mix.

    ``rls`` is the application's text (``%s`` placeholders); ``hand(viewer)`` the hand-written
    equivalent with the same placeholders; ``alternatives(viewer)`` other hand-written shapes of
    the same rule, where no one shape is best for every scope size (an expert writing for one
    principal would pick one: the bench times them all on the principal's data and keeps the
    fastest, after checking they return the same rows); ``params`` names the inputs (filled per
    principal by the bench from the principal's visible set, see ``bench.pick_params``);
    ``applies`` says for which viewers it runs.
    """

    name: str
    title: str
    rls: str
    hand: Callable[[Viewer], sql.Composable]
    params: tuple[str, ...] = ()
    applies: Callable[[Viewer], bool] = lambda viewer: True
    alternatives: Callable[[Viewer], dict[str, sql.Composable]] | None = None

    def hand_variants(self, viewer: Viewer) -> dict[str, sql.Composable]:
        """Every hand-written shape for ``viewer``: ``{"default": hand(viewer), **alternatives(viewer)}``."""
        return {"default": self.hand(viewer), **(self.alternatives(viewer) if self.alternatives else {})}

    def args(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The query's parameters from a principal's picked values."""
        return tuple(values[name] for name in self.params)


_CONTRACT_COLUMNS = (
    "c.id, c.insurer_id, c.policy_number, c.product_type, c.policyholder_id, c.insured_id,"
    " c.starts_on, c.expires_on, c.premium"
)
_CUSTOMER_COLUMNS = "p.id, p.full_name, p.full_name_kana, p.address, p.phone, p.email, p.birth_date, p.gender"
_NOTICE_COLUMNS = (
    "n.id, n.insurer_id, n.addressee_agency_id, n.kind, n.contract_id, n.customer_id, n.created_at"
)


def _h_contract_by_policy_number(viewer: Viewer) -> sql.Composable:
    return sql.SQL(
        "SELECT " + _CONTRACT_COLUMNS + " FROM public.contract AS c"
        " WHERE c.insurer_id = %s AND c.policy_number = %s AND {visible}"
    ).format(visible=contract_visible(viewer, "c"))


def _h_customer_by_id(viewer: Viewer) -> sql.Composable:
    return sql.SQL(
        "SELECT " + _CUSTOMER_COLUMNS + " FROM public.customer AS p WHERE p.id = %s AND {visible}"
    ).format(visible=customer_visible(viewer, "p"))


def _h_customers_page(viewer: Viewer) -> sql.Composable:
    """The visible customers built once (a materialised CTE), joined: best for large scopes."""
    return sql.SQL(
        "WITH {ids} SELECT p.id, p.full_name, p.birth_date FROM public.customer AS p JOIN ids ON ids.id = p.id"
        " ORDER BY p.full_name, p.id LIMIT {page} OFFSET %s"
    ).format(ids=customer_ids_cte(viewer), page=sql.Literal(PAGE))


def _h_customers_page_by_array(viewer: Viewer) -> dict[str, sql.Composable]:
    """The visible customer ids as an array probed on the primary key: best for small scopes."""
    prospects = (
        sql.SQL(
            " UNION ALL SELECT r.id FROM public.customer AS r WHERE r.registered_by_agency_id = {a}"
        ).format(a=_lit(viewer.agency_id))
        if viewer.kind == "agency" and not viewer.restricted
        else sql.SQL("")
    )
    return {
        "id array": sql.SQL(
            "SELECT p.id, p.full_name, p.birth_date FROM public.customer AS p"
            " WHERE p.id = ANY (ARRAY(SELECT x.id FROM public.contract AS c"
            " CROSS JOIN LATERAL (VALUES (c.policyholder_id), (c.insured_id)) AS x (id)"
            " WHERE {scope}{prospects}))"
            " ORDER BY p.full_name, p.id LIMIT {page} OFFSET %s"
        ).format(scope=contract_in_scope(viewer, "c"), prospects=prospects, page=sql.Literal(PAGE))
    }


def _h_contract_count(viewer: Viewer) -> sql.Composable:
    if viewer.kind == "insurer":
        return sql.SQL("SELECT count(*) FROM public.contract AS c WHERE c.insurer_id = {i}").format(
            i=_lit(viewer.insurer_id)
        )
    # Every handler row names an existing contract (foreign key): no need to visit contract.
    return sql.SQL("SELECT count(*) FROM (SELECT DISTINCT v.contract_id FROM ({ids}) AS v) AS d").format(
        ids=visible_contract_ids(viewer)
    )


def _h_contracts_with_policyholders(viewer: Viewer) -> sql.Composable:
    return sql.SQL(
        "SELECT c.id, c.policy_number, c.starts_on, c.premium, p.full_name FROM public.contract AS c"
        " JOIN public.customer AS p ON p.id = c.policyholder_id WHERE {scope} ORDER BY c.id DESC LIMIT {page}"
    ).format(scope=contract_in_scope(viewer, "c"), page=sql.Literal(PAGE))


def _h_notice_feed(viewer: Viewer) -> sql.Composable:
    if viewer.kind == "insurer":
        return sql.SQL(
            "SELECT " + _NOTICE_COLUMNS + " FROM public.notice AS n WHERE n.insurer_id = {i}"
            " ORDER BY n.created_at DESC, n.id DESC LIMIT {page}"
        ).format(i=_lit(viewer.insurer_id), page=sql.Literal(PAGE))
    restriction = (
        sql.SQL(" AND n.insurer_id = {n}").format(n=_lit(viewer.insurer_id))
        if viewer.restricted
        else sql.SQL("")
    )
    return sql.SQL(
        "SELECT " + _NOTICE_COLUMNS + " FROM public.notice AS n"
        " WHERE n.addressee_agency_id IN (SELECT {a}::bigint UNION SELECT s.supervising_agency_id"
        " FROM public.supervision AS s WHERE s.working_agency_id = {a} AND {valid_s})"
        " AND n.insurer_id IN ({insurers}){restriction}"
        " AND (n.contract_id IS NULL OR EXISTS (SELECT FROM public.contract AS c WHERE c.id = n.contract_id"
        " AND {contract}))"
        " AND (n.customer_id IS NULL OR EXISTS (SELECT FROM public.customer AS p WHERE p.id = n.customer_id"
        " AND {customer}))"
        " ORDER BY n.created_at DESC, n.id DESC LIMIT {page}"
    ).format(
        a=_lit(viewer.agency_id),
        valid_s=valid("s"),
        insurers=_entrusted_insurers(viewer),
        restriction=restriction,
        contract=contract_visible(viewer, "c"),
        customer=customer_visible(viewer, "p"),
        page=sql.Literal(PAGE),
    )


_WORKING_AGENCIES = (
    "SELECT a.id, a.code, a.name, count(h.id) AS handled"
    " FROM public.supervision AS s JOIN public.agency AS a ON a.id = s.working_agency_id"
    " LEFT JOIN public.contract_handler AS h ON h.agency_id = a.id"
    " AND h.valid_from <= now() AND (h.valid_to IS NULL OR now() < h.valid_to){handler_scope}"
    " WHERE s.supervising_agency_id = %s AND s.valid_from <= now() AND (s.valid_to IS NULL OR now() < s.valid_to)"
    "{restricted}"
    " GROUP BY a.id, a.code, a.name ORDER BY a.code, a.id"
)


def _h_working_agencies(viewer: Viewer) -> sql.Composable:
    if viewer.restricted:
        # A restricted principal sees no supervision row at all (scope-rules: its master data is its
        # own agency row and that agency's entrustments from N).
        return sql.SQL(_WORKING_AGENCIES).format(handler_scope=sql.SQL(""), restricted=sql.SQL(" AND false"))
    # A sees the handler rows of the contracts it sees; a valid link of an agency it currently
    # supervises makes the contract visible exactly when A is entrusted by its insurer.
    return sql.SQL(_WORKING_AGENCIES).format(
        handler_scope=sql.SQL(" AND h.insurer_id = ANY (ARRAY({insurers}))").format(
            insurers=_entrusted_insurers(viewer)
        ),
        restricted=sql.SQL(""),
    )


_INSURER_PAGE = (
    "SELECT c.id, c.policy_number, c.product_type, c.premium, h.agency_id"
    " FROM public.contract AS c JOIN public.contract_handler AS h ON h.contract_id = c.id"
    " WHERE h.role = 'primary' AND h.valid_from <= now() AND (h.valid_to IS NULL OR now() < h.valid_to){scope}"
    " ORDER BY c.policy_number, c.id, h.agency_id LIMIT " + str(PAGE) + " OFFSET %s"
)


def _h_insurer_page(viewer: Viewer) -> sql.Composable:
    return sql.SQL(_INSURER_PAGE).format(
        scope=sql.SQL(" AND c.insurer_id = {i}").format(i=_lit(viewer.insurer_id))
    )


QUERIES: dict[str, Query] = {
    query.name: query
    for query in (
        Query(
            "contract_by_policy_number",
            "contract by policy number",
            "SELECT " + _CONTRACT_COLUMNS + " FROM public.contract AS c"
            " WHERE c.insurer_id = %s AND c.policy_number = %s",
            _h_contract_by_policy_number,
            ("insurer_id", "policy_number"),
        ),
        Query(
            "customer_by_id",
            "one customer by id",
            "SELECT " + _CUSTOMER_COLUMNS + " FROM public.customer AS p WHERE p.id = %s",
            _h_customer_by_id,
            ("customer_id",),
        ),
        Query(
            "customers_page",
            f"page of {PAGE} customers by name, deep offset",
            "SELECT p.id, p.full_name, p.birth_date FROM public.customer AS p"
            f" ORDER BY p.full_name, p.id LIMIT {PAGE} OFFSET %s",
            _h_customers_page,
            ("customers_offset",),
            alternatives=_h_customers_page_by_array,
        ),
        Query(
            "contract_count",
            "count of visible contracts",
            "SELECT count(*) FROM public.contract",
            _h_contract_count,
        ),
        Query(
            "contracts_with_policyholders",
            f"{PAGE} contracts with their policyholders, newest first",
            "SELECT c.id, c.policy_number, c.starts_on, c.premium, p.full_name FROM public.contract AS c"
            f" JOIN public.customer AS p ON p.id = c.policyholder_id ORDER BY c.id DESC LIMIT {PAGE}",
            _h_contracts_with_policyholders,
        ),
        Query(
            "notice_feed",
            "notice feed, newest first",
            "SELECT " + _NOTICE_COLUMNS + " FROM public.notice AS n"
            f" ORDER BY n.created_at DESC, n.id DESC LIMIT {PAGE}",
            _h_notice_feed,
        ),
        Query(
            "working_agencies",
            "a supervising agency's working agencies with their handled contracts",
            _WORKING_AGENCIES.format(handler_scope="", restricted=""),
            _h_working_agencies,
            ("agency_id",),
            applies=lambda viewer: viewer.kind == "agency",
        ),
        Query(
            "insurer_page",
            f"an insurer's page of {PAGE} contracts with their primary agency, deep offset",
            _INSURER_PAGE.format(scope=""),
            _h_insurer_page,
            ("insurer_page_offset",),
            applies=lambda viewer: viewer.kind == "insurer",
        ),
    )
}


def query_names() -> list[str]:
    """The mix's query names, in report order."""
    return list(QUERIES)
