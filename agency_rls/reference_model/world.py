"""The rows of the spec's tables, as plain immutable values, and a ``World`` that holds them.

Why plain dataclasses and not the SQLAlchemy tables of ``schema``: the reference model must be a
second, independent reading of ``scope-rules.md``. It repeats the spec's column names (the
"Entities" table) and nothing else; the database is only one of the places a ``World`` can come
from (``agency_rls.reference_model.database``), next to Hypothesis strategies and scenario dumps.

Validity columns are timezone-aware ``datetime`` values, as the spec requires ``timestamptz``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any, ClassVar

#: The spec's tables, in an order in which rows can be inserted (foreign keys point backwards).
TABLES: tuple[str, ...] = (
    "insurer",
    "agency",
    "supervision",
    "entrustment",
    "customer",
    "contract",
    "contract_handler",
    "notice",
    "notice_receipt",
    "principal",
)
#: Tables under forced row-level security ("Everything else": every table except ``insurer``).
PROTECTED_TABLES: tuple[str, ...] = TABLES[1:]


@dataclass(frozen=True)
class Insurer:
    id: int
    code: str
    name: str
    line: str  # non_life | life
    kind: str  # operator | gateway
    table: ClassVar[str] = "insurer"


@dataclass(frozen=True)
class Agency:
    id: int
    code: str
    name: str
    table: ClassVar[str] = "agency"


@dataclass(frozen=True)
class Supervision:
    id: int
    supervising_agency_id: int
    working_agency_id: int
    valid_from: dt.datetime
    valid_to: dt.datetime | None
    table: ClassVar[str] = "supervision"


@dataclass(frozen=True)
class Entrustment:
    id: int
    agency_id: int
    insurer_id: int
    valid_from: dt.datetime
    valid_to: dt.datetime | None
    table: ClassVar[str] = "entrustment"


@dataclass(frozen=True)
class Customer:
    id: int
    full_name: str
    full_name_kana: str | None = None
    address: str | None = None
    phone: str | None = None
    fax: str | None = None
    email: str | None = None
    birth_date: dt.date | None = None
    gender: str | None = None
    registered_by_agency_id: int | None = None
    table: ClassVar[str] = "customer"


@dataclass(frozen=True)
class Contract:
    id: int
    insurer_id: int
    policy_number: str
    policyholder_id: int | None = None  # nullable in the schema: a loader may omit it
    previous_contract_id: int | None = None
    product_type: str | None = None
    insured_id: int | None = None
    beneficiary_name: str | None = None
    starts_on: dt.date | None = None
    expires_on: dt.date | None = None
    premium: Decimal | None = None
    has_changes: bool = False
    has_claims: bool = False
    source: str = "direct"  # direct | gateway
    table: ClassVar[str] = "contract"


@dataclass(frozen=True)
class ContractHandler:
    id: int
    contract_id: int
    agency_id: int
    role: str  # primary | joint
    valid_from: dt.datetime
    valid_to: dt.datetime | None
    table: ClassVar[str] = "contract_handler"


@dataclass(frozen=True)
class Notice:
    id: int
    insurer_id: int
    addressee_agency_id: int
    kind: str  # pending_paperwork | maturity_list | renewal | claim | message | general
    contract_id: int | None
    customer_id: int | None
    body: str | None
    created_at: dt.datetime
    table: ClassVar[str] = "notice"


@dataclass(frozen=True)
class NoticeReceipt:
    id: int
    notice_id: int
    agency_id: int
    read_at: dt.datetime
    table: ClassVar[str] = "notice_receipt"


@dataclass(frozen=True)
class Principal:
    role_name: str
    kind: str  # agency | insurer
    agency_id: int | None
    insurer_id: int | None  # for kind 'agency': the optional restriction to one insurer
    table: ClassVar[str] = "principal"

    @property
    def restricted(self) -> bool:
        """An agency principal with ``insurer_id`` set is restricted to that one insurer."""
        return self.kind == "agency" and self.insurer_id is not None


Row = Insurer | Agency | Supervision | Entrustment | Customer | Contract | ContractHandler | Notice
AnyRow = Row | NoticeReceipt | Principal

ROW_TYPES: dict[str, type[Any]] = {
    "insurer": Insurer,
    "agency": Agency,
    "supervision": Supervision,
    "entrustment": Entrustment,
    "customer": Customer,
    "contract": Contract,
    "contract_handler": ContractHandler,
    "notice": Notice,
    "notice_receipt": NoticeReceipt,
    "principal": Principal,
}


def columns(row_type: type[Any]) -> tuple[str, ...]:
    """The spec's column names of a row type, in declaration order."""
    return tuple(f.name for f in fields(row_type))


def row_key(row: AnyRow) -> int | str:
    """The key of a row: ``id``, or ``role_name`` for ``principal``."""
    return row.role_name if isinstance(row, Principal) else row.id


def valid_at(valid_from: dt.datetime, valid_to: dt.datetime | None, now: dt.datetime) -> bool:
    """'"Valid now" means `valid_from <= now()` and (`valid_to` is null or `now() < valid_to`)'."""
    return valid_from <= now and (valid_to is None or now < valid_to)


@dataclass(frozen=True)
class World:
    """All rows of the spec's tables. Tuples keep a world hashable and printable as a literal."""

    insurer: tuple[Insurer, ...] = ()
    agency: tuple[Agency, ...] = ()
    supervision: tuple[Supervision, ...] = ()
    entrustment: tuple[Entrustment, ...] = ()
    customer: tuple[Customer, ...] = ()
    contract: tuple[Contract, ...] = ()
    contract_handler: tuple[ContractHandler, ...] = ()
    notice: tuple[Notice, ...] = ()
    notice_receipt: tuple[NoticeReceipt, ...] = ()
    principal: tuple[Principal, ...] = field(default=())

    def rows(self, table: str) -> tuple[AnyRow, ...]:
        """The rows of one table by its spec name."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        return getattr(self, table)  # type: ignore[no-any-return]

    def principal_named(self, role_name: str) -> Principal | None:
        """The principal row of ``role_name``, or None: such a role is no principal (default deny)."""
        return next((p for p in self.principal if p.role_name == role_name), None)

    def with_role_prefix(self, prefix: str) -> World:
        """The same world with every principal's ``role_name`` behind ``prefix`` (as a database stores it)."""
        return replace(
            self, principal=tuple(replace(p, role_name=prefix + p.role_name) for p in self.principal)
        )

    def sorted(self) -> World:
        """Rows in key order, so that two equal worlds compare equal whatever their load order."""
        return World(**{t: tuple(sorted(self.rows(t), key=row_key)) for t in TABLES})  # type: ignore[arg-type]

    def check(self) -> None:
        """Raise ``ValueError`` if the rows break a constraint the schema enforces.

        Generated and hand-written worlds go through this before loading, so that a broken world is
        reported as such and not as a policy mismatch.
        """
        for table in TABLES:
            keys = [row_key(r) for r in self.rows(table)]
            if len(keys) != len(set(keys)):
                raise ValueError(f"{table}: duplicate keys")
        if len({i.code for i in self.insurer}) != len(self.insurer):
            raise ValueError("insurer: duplicate code")
        if len({a.code for a in self.agency}) != len(self.agency):
            raise ValueError("agency: duplicate code")
        numbers = [(c.insurer_id, c.policy_number) for c in self.contract]
        if len(set(numbers)) != len(numbers):
            raise ValueError("contract: policy_number not unique per insurer")
        contract_insurer = {c.id: c.insurer_id for c in self.contract}
        for n in self.notice:
            if n.kind not in ("general", "message") and n.contract_id is None and n.customer_id is None:
                raise ValueError(f"notice {n.id}: kind {n.kind} needs contract_id or customer_id")
            if n.contract_id is not None and contract_insurer.get(n.contract_id) != n.insurer_id:
                raise ValueError(f"notice {n.id}: its contract is not issued by the notice's insurer")
        receipts = [(r.notice_id, r.agency_id) for r in self.notice_receipt]
        if len(set(receipts)) != len(receipts):
            raise ValueError("notice_receipt: duplicate (notice_id, agency_id)")
        for p in self.principal:
            if p.kind == "agency" and p.agency_id is None:
                raise ValueError(f"principal {p.role_name}: an agency principal needs agency_id")
            if p.kind == "insurer" and (p.insurer_id is None or p.agency_id is not None):
                raise ValueError(f"principal {p.role_name}: an insurer principal needs insurer_id only")
