"""What acting as a principal adds to a transaction, with many provisioned principals.

    python -m agency_rls.checks.bench_overhead [--principals 10000] [--transactions 2000]
                                               [--database-url URL] [--keep]

Builds a world of N agencies, each entrusted by one insurer and handling one contract of its own
(so every principal sees exactly one row), provisions N LOGIN principals, and times the same
point lookup (``SELECT policy_number, premium FROM contract WHERE id = $1``, the acting agency's
own contract) as one transaction in several ways:

- ``superuser``: a plain transaction (BEGIN, query, COMMIT) as the superuser: no row-level
  security at all (the superuser bypasses it);
- ``principal, direct login``: the same as one principal logged in directly: row-level security,
  no role switch;
- ``pool, random principal``: ``PrincipalPool.acting_as(agency=<random>)``, the API under test:
  checkout, BEGIN, checked ``SET LOCAL ROLE``, query, COMMIT, check-in reset;
- ``pool, same principal``: the same with one principal every time (no re-planning on a role
  change);
- ``SET LOCAL ROLE only, random``: a raw backend connection with BEGIN, ``SET LOCAL ROLE``,
  query, COMMIT: the role switch without the API's checks and pool.

Medians (and p90) of per-transaction wall time, measured from the client over the Unix socket,
in interleaved rounds so that drift affects every mode alike. Not a test: the numbers depend on
the machine.

Without ``--database-url`` a throwaway cluster is started and removed. With one, the database
must be empty; everything (tables and the N roles) is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agency_rls.backend import PrincipalPool, set_local_principal
from agency_rls.cluster.database import libpq_conninfo
from agency_rls.cluster.throwaway import ThrowawayCluster
from agency_rls.migrations import runner as migrations_runner
from agency_rls.rls_policies.provision import provision

BENCH_DATABASE = "agency_rls_bench"
QUERY = "SELECT policy_number, premium FROM public.contract WHERE id = %s"
ROUNDS = 10
WARMUP = 200


@dataclass
class Mode:
    """One way of running the transaction, and its timings in microseconds."""

    label: str
    run: Callable[[int], None]  # agency number -> one transaction
    random_principal: bool = True
    samples: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.samples)

    def p90(self) -> float:
        return statistics.quantiles(self.samples, n=10)[-1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agency_rls.checks.bench_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--principals", type=int, default=10_000, help="agencies, hence principals (10000)")
    parser.add_argument("--transactions", type=int, default=2_000, help="timed transactions per mode (2000)")
    parser.add_argument("--database-url", help="an EMPTY database to use (default: a throwaway cluster)")
    parser.add_argument("--keep", action="store_true", help="with --database-url: leave the world in place")
    parser.add_argument("--seed", type=int, default=20_241_105)
    args = parser.parse_args(argv)
    if args.principals < 1 or args.transactions < ROUNDS:
        parser.error(f"--principals must be >= 1 and --transactions >= {ROUNDS}")
    return args


def create_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def require_empty(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace)"
            " + (to_regnamespace('agency_rls') IS NOT NULL)::int"
        ).fetchone()
    if row is None or row[0] != 0:
        sys.exit(
            "bench_principal_overhead: the database is not empty; give an empty one (it is filled and emptied)"
        )


def load_world(conn: psycopg.Connection[Any], n: int) -> None:
    """N agencies, one insurer entrusting all of them, one customer and one contract per agency."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO public.insurer (id, code, name, line, kind)"
            " VALUES (1, 'BI', 'Bench Insurer', 'non_life', 'operator')"
        )
        conn.execute(
            "INSERT INTO public.agency (id, code, name)"
            " SELECT i, 'A' || i, 'Agency ' || i FROM generate_series(1, %s) AS i",
            (n,),
        )
        conn.execute(
            "INSERT INTO public.entrustment (id, agency_id, insurer_id, valid_from)"
            " SELECT i, i, 1, now() - interval '1 year' FROM generate_series(1, %s) AS i",
            (n,),
        )
        conn.execute(
            "INSERT INTO public.customer (id, full_name)"
            " SELECT i, 'Customer ' || i FROM generate_series(1, %s) AS i",
            (n,),
        )
        conn.execute(
            "INSERT INTO public.contract (id, insurer_id, policy_number, product_type, policyholder_id,"
            " starts_on, expires_on, premium, source)"
            " SELECT i, 1, 'BI-' || i, 'auto', i, current_date - 30, current_date + 335, 1000 + i, 'direct'"
            " FROM generate_series(1, %s) AS i",
            (n,),
        )
        conn.execute(
            "INSERT INTO public.contract_handler (id, contract_id, agency_id, role, valid_from)"
            " SELECT i, i, i, 'primary', now() - interval '1 year' FROM generate_series(1, %s) AS i",
            (n,),
        )
    conn.execute("ANALYZE")


def timed(mode: Mode, agency: int) -> None:
    started = time.perf_counter_ns()
    mode.run(agency)
    mode.samples.append((time.perf_counter_ns() - started) / 1000)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    n = args.principals
    prefix = f"b{secrets.token_hex(3)}_"
    password = "bench-" + secrets.token_hex(8)
    with ExitStack() as stack:
        if args.database_url is None:
            cluster = ThrowawayCluster().start()
            stack.callback(cluster.stop)
            create_database(cluster.conninfo(), BENCH_DATABASE)
            url = cluster.url(BENCH_DATABASE)
        else:
            url = args.database_url
        admin = libpq_conninfo(url)
        require_empty(admin)
        print(f"server: {url if args.database_url else 'throwaway cluster'}; {n} principals; prefix {prefix}")

        started = time.perf_counter()
        migrations_runner.upgrade(url, "head", role_prefix=prefix)
        if args.database_url is not None and not args.keep:
            stack.callback(migrations_runner.downgrade, url, "base")
        superuser = stack.enter_context(psycopg.connect(admin, autocommit=True))
        load_world(superuser, n)
        print(f"migrated and loaded in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = provision(superuser, login=True)
        print(f"provisioned {report.principals} principals in {time.perf_counter() - started:.1f} s")

        direct_agency = n // 2 + 1
        backend_role, direct_role = f"{prefix}rls_backend", f"{prefix}agency_a{direct_agency}"
        for role in (backend_role, direct_role):
            superuser.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
        backend_conninfo = make_conninfo(admin, user=backend_role, password=password)
        direct = stack.enter_context(
            psycopg.connect(make_conninfo(admin, user=direct_role, password=password), autocommit=True)
        )
        raw_backend = stack.enter_context(psycopg.connect(backend_conninfo, autocommit=True))
        pool = stack.enter_context(PrincipalPool(backend_conninfo, min_size=1, max_size=1))

        def plain(conn: psycopg.Connection[Any]) -> Callable[[int], None]:
            def run(agency: int) -> None:
                with conn.transaction():
                    rows = conn.execute(QUERY, (agency,)).fetchall()
                assert len(rows) == 1

            return run

        def through_pool(agency: int) -> None:
            with pool.acting_as(agency=f"A{agency}") as conn:
                rows = conn.execute(QUERY, (agency,)).fetchall()
            assert len(rows) == 1

        def set_role_only(agency: int) -> None:
            with raw_backend.transaction():
                raw_backend.execute(
                    sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(f"{prefix}agency_a{agency}")),
                    prepare=False,
                )
                rows = raw_backend.execute(QUERY, (agency,)).fetchall()
            assert len(rows) == 1

        modes = [
            Mode("superuser, plain transaction", plain(superuser)),
            Mode("principal, direct login", plain(direct), random_principal=False),
            Mode("pool, random principal", through_pool),
            Mode("pool, same principal", through_pool, random_principal=False),
            Mode("SET LOCAL ROLE only, random", set_role_only),
        ]
        # Sanity: the API really acts as the principal and sees only its own contract.
        with pool.acting_as(agency=f"A{direct_agency}") as conn:
            assert conn.execute("SELECT count(*) FROM public.contract").fetchone() == (1,)
        with raw_backend.transaction():
            set_local_principal(raw_backend, direct_role)

        for mode in modes:
            for _ in range(WARMUP):
                mode.run(rng.randint(1, n) if mode.random_principal else direct_agency)
        per_round = args.transactions // ROUNDS
        for _ in range(ROUNDS):
            for mode in modes:
                for _ in range(per_round):
                    timed(mode, rng.randint(1, n) if mode.random_principal else direct_agency)

        base, direct_mode, api = modes[0].median(), modes[1].median(), modes[2].median()
        width = max(len(mode.label) for mode in modes)
        print(f"\n{per_round * ROUNDS} transactions per mode, {n} principals, median / p90 in ms:")
        for mode in modes:
            print(f"  {mode.label:<{width}}  {mode.median() / 1000:7.3f}  {mode.p90() / 1000:7.3f}")
        print(
            f"\nacting as a random principal through the pool: {api / 1000:.3f} ms median, "
            f"{api / base:.2f}x the superuser's plain transaction ({base / 1000:.3f} ms), "
            f"{api / direct_mode:.2f}x a principal logged in directly ({direct_mode / 1000:.3f} ms), "
            f"+{(api - direct_mode) / 1000:.3f} ms per transaction"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
