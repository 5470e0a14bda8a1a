"""Synthetic workloads at scale: ``seed`` (a reproducible world, bulk-loaded) and ``bench``.

- ``agency_rls.workload.seed``: ``seed_world(conn, scale=SCALES["small"], seed=1)`` generates a
  world from a seed (``synthetic``) and loads it with ``COPY`` into a database migrated by this
  project, then provisions its principals and analyzes it (``agency-rls seed``).
- ``agency_rls.workload.bench``: timings of what principals read on such a world (``agency-rls bench``).

Worlds are generated, never written out: the same seed (and reference day) gives the same rows.
"""
