"""Derived state stays exact under plain SQL writes by loaders (scope-rules.md, "Everything else").

contract_handler.insurer_id is what insurer principals and the entrustment guard filter on; a
loader never supplies it, may supply a wrong one, and may move a contract to another insurer.
"""

from __future__ import annotations

from tests.support import ScratchDatabase


def test_handler_insurer_follows_its_contract(fresh_db: ScratchDatabase) -> None:
    fresh_db.migrate()
    try:
        with fresh_db.connect() as conn:
            conn.execute(
                """
                INSERT INTO public.insurer (id, code, name, line, kind) VALUES
                    (1, 'NL', 'Non-life', 'non_life', 'operator'), (2, 'GW1', 'Gateway', 'life', 'gateway');
                INSERT INTO public.agency (id, code, name) VALUES (1, 'A1', 'Agency');
                INSERT INTO public.customer (id, full_name) VALUES (1, 'Sato Hanako');
                INSERT INTO public.contract (id, insurer_id, policy_number, policyholder_id)
                    VALUES (1, 1, 'NL-1', 1), (2, 2, 'GW1-1', 1);
                INSERT INTO public.contract_handler (contract_id, agency_id) VALUES (1, 1);
                INSERT INTO public.contract_handler (contract_id, agency_id, insurer_id) VALUES (2, 1, 1);
                """
            )
            handlers = "SELECT contract_id, insurer_id FROM public.contract_handler ORDER BY contract_id"
            assert conn.execute(handlers).fetchall() == [(1, 1), (2, 2)]  # filled in; a wrong one corrected
            conn.execute("UPDATE public.contract SET insurer_id = 2 WHERE id = 1")
            assert conn.execute(handlers).fetchall() == [
                (1, 2),
                (2, 2),
            ]  # the contract moved: handlers follow
            conn.execute("UPDATE public.contract_handler SET contract_id = 1 WHERE contract_id = 2")
            conn.execute("UPDATE public.contract SET insurer_id = 1 WHERE id = 1")
            assert conn.execute(handlers).fetchall() == [(1, 1), (1, 1)]
    finally:
        fresh_db.downgrade_base()
