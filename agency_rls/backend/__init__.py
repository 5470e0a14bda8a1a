"""Application backends acting as one principal per transaction, over pooled backend-role connections.

- ``principal``: whom to act for (``Principal``), the checked ``SET LOCAL ROLE``, typed refusals;
- ``pool``: ``PrincipalPool``, psycopg 3 + psycopg_pool, ``with pool.acting_as(agency="W11") as conn``;
- ``sqlalchemy``: the same for SQLAlchemy 2 engines and sessions, sync and asyncio
  (import ``agency_rls.backend.sqlalchemy`` explicitly);
- ``hygiene``: what a returned connection must not carry, and how pools reset or discard it.

Over a backend connection PostgreSQL lets SQL switch to any principal (``SET ROLE`` is checked
against the session user): the backend process, and the principal this API is told to act as,
is the trusted boundary.
"""

from agency_rls.backend.hygiene import LeftoverState, clean_connection, leftover_state
from agency_rls.backend.pool import BackendRoleError, PrincipalPool
from agency_rls.backend.principal import (
    InvalidPrincipalName,
    NotAMember,
    NotAPrincipal,
    Principal,
    PrincipalError,
    UnknownPrincipal,
    set_local_principal,
)

__all__ = [
    "BackendRoleError",
    "InvalidPrincipalName",
    "LeftoverState",
    "NotAMember",
    "NotAPrincipal",
    "Principal",
    "PrincipalError",
    "PrincipalPool",
    "UnknownPrincipal",
    "clean_connection",
    "leftover_state",
    "set_local_principal",
]
