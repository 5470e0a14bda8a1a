"""The scope copies and derived columns of a synthetic world, written by the loader itself.

Why: with the schema's triggers on, every ``COPY`` statement of handler rows refreshes its
contracts and every contract statement its customers: exact, but it writes each contract and
customer row twice and checks every key row by row (7 minutes for 1,000,000 contracts; the
10,000,000-contract ``bench`` world would take well over an hour). A superuser may load with
``session_replication_role = replica`` (no triggers, no key checks) if the rows it writes are
already what the triggers would have made of them. This module computes those values from the
blueprint while the rows are generated:

- ``contract.handler_agency_ids`` / ``handler_windows``: the contract's handler links in handler
  id order, each window ``agency_rls.validity(valid_from, valid_to)``;
- ``contract_handler.insurer_id``: the contract's insurer;
- ``customer.handler_agency_ids`` / ``handler_insurer_ids`` / ``handler_windows`` /
  ``party_insurer_ids``: the links of every contract the customer is policyholder or insured of,
  by contract id then link, and the distinct insurers of those contracts.

Nothing here is trusted: ``provision`` then runs the database's own repair
(``repair_derived_columns`` and ``agency_rls.refresh_all_scope_copies()``), which rewrites any row
whose copy differs, and the seed report counts those rewrites (``SeedReport.rows_repaired``; the
tests require zero). The definitions stay the database's; this is a fast first draft of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agency_rls.workload.synthetic import OPEN, Blueprint

__all__ = ["ScopeCopies"]


class ScopeCopies:
    """Wraps a blueprint's row streams, appending the derived columns (see the module docstring).

    Use the streams in this order: ``contract_rows`` (records who is party to what), then
    ``handler_rows`` and ``customer_rows`` (which read what the contract stream recorded).
    """

    #: Columns appended to each stream, in order.
    CONTRACT_COLUMNS = ("handler_agency_ids", "handler_windows")
    HANDLER_COLUMNS = ("insurer_id",)
    CUSTOMER_COLUMNS = ("handler_agency_ids", "handler_insurer_ids", "handler_windows", "party_insurer_ids")

    def __init__(self, blueprint: Blueprint) -> None:
        self.blueprint = blueprint
        self._windows: dict[tuple[int, int], str] = {}
        # Per customer id: the ids of the contracts it is party to, ascending (contracts are
        # generated in id order). Index 0 unused.
        self._parties: list[list[int] | None] = [None] * (blueprint.scale.customers + 1)

    # -- values ----------------------------------------------------------------------------------

    def _window(self, start: int, end: int) -> str:
        """``agency_rls.validity`` of a link as range text, quoted for an array literal."""
        key = (start, end)
        text = self._windows.get(key)
        if text is None:
            midnight = self.blueprint.days.midnight
            if end != OPEN and end <= start:
                text = '"empty"'
            else:
                text = f'"[{midnight(start)},{midnight(end) if end != OPEN else ""})"'
            self._windows[key] = text
        return text

    def _links(self, contract_id: int) -> list[tuple[int, int, int]]:
        """The contract's handler links (agency, from, to) in handler id order."""
        b = self.blueprint
        links = [(b.contract_agency[contract_id], b.link_from[contract_id], b.link_to[contract_id])]
        for agency_id, _role, start, end in b.extra_links.get(contract_id, ()):
            links.append((agency_id, start, end))
        return links

    # -- streams ---------------------------------------------------------------------------------

    def contract_rows(self, rows: Iterable[tuple[object, ...]]) -> Iterator[tuple[object, ...]]:
        """Contract rows with their copies; remembers each contract's policyholder and insured."""
        parties = self._parties
        for row in rows:
            contract_id = row[0]
            holder, insured = row[5], row[6]
            assert isinstance(contract_id, int) and isinstance(holder, int) and isinstance(insured, int)
            links = self._links(contract_id)
            for customer_id in (holder,) if insured == holder else (holder, insured):
                known = parties[customer_id]
                if known is None:
                    parties[customer_id] = [contract_id]
                else:
                    known.append(contract_id)
            yield (
                *row,
                "{" + ",".join(str(agency_id) for agency_id, _, _ in links) + "}",
                "{" + ",".join(self._window(start, end) for _, start, end in links) + "}",
            )

    def handler_rows(self, rows: Iterable[tuple[object, ...]]) -> Iterator[tuple[object, ...]]:
        """Handler rows with their contract's insurer (what the BEFORE trigger would write)."""
        insurer = self.blueprint.contract_insurer
        for row in rows:
            contract_id = row[1]
            assert isinstance(contract_id, int)
            yield (*row, insurer[contract_id])

    def customer_rows(self, rows: Iterable[tuple[object, ...]]) -> Iterator[tuple[object, ...]]:
        """Customer rows with the links of the contracts they are party to (after ``contract_rows``)."""
        insurer_of = self.blueprint.contract_insurer
        parties = self._parties
        for row in rows:
            customer_id = row[0]
            assert isinstance(customer_id, int)
            contracts = parties[customer_id]
            if not contracts:
                yield (*row, "{}", "{}", "{}", "{}")
                continue
            agencies: list[str] = []
            insurers: list[str] = []
            windows: list[str] = []
            for contract_id in contracts:
                insurer = str(insurer_of[contract_id])
                for agency_id, start, end in self._links(contract_id):
                    agencies.append(str(agency_id))
                    insurers.append(insurer)
                    windows.append(self._window(start, end))
            distinct = sorted({insurer_of[contract_id] for contract_id in contracts})
            parties[customer_id] = None  # done with it: memory back as the stream goes
            yield (
                *row,
                "{" + ",".join(agencies) + "}",
                "{" + ",".join(insurers) + "}",
                "{" + ",".join(windows) + "}",
                "{" + ",".join(map(str, distinct)) + "}",
            )
