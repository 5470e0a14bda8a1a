"""The server's minor release is older than the fixes for the row-security CVEs of its major.

Row level security bugs are fixed in minor releases: cached plans reused across roles
(CVE-2023-2455, CVE-2024-10976), MERGE and policies (CVE-2023-39418), statistics leaking
hidden rows (CVE-2024-4317, CVE-2025-8713). A database on an older minor leaks whatever its
policies say (threats.md 6, 15, attack 36). Majors older than 13 get none of the 2025 fixes.
CVE-2024-4317 also needs a catalog fix on clusters created before the upgrade (see the release
notes of 14.12/15.7/16.3); this rule cannot see that.

Bad::

    SELECT version();   -- PostgreSQL 15.8

Good::

    SELECT version();   -- PostgreSQL 15.14 or later (16.10, 17.6, any 18)
"""

ID = "server_cve_minor"
LEVEL = "error"
TITLE = "Server minor release without the row-security CVE fixes"

#: (CVE, major, first fixed minor) for the supported majors (threats.md).
FIXES = [
    ("CVE-2023-2455", 13, 11),
    ("CVE-2023-2455", 14, 8),
    ("CVE-2023-2455", 15, 3),
    ("CVE-2023-39418", 15, 4),
    ("CVE-2024-4317", 14, 12),
    ("CVE-2024-4317", 15, 7),
    ("CVE-2024-4317", 16, 3),
    ("CVE-2024-10976", 13, 17),
    ("CVE-2024-10976", 14, 14),
    ("CVE-2024-10976", 15, 9),
    ("CVE-2024-10976", 16, 5),
    ("CVE-2024-10976", 17, 1),
    ("CVE-2025-8713", 13, 22),
    ("CVE-2025-8713", 14, 19),
    ("CVE-2025-8713", 15, 14),
    ("CVE-2025-8713", 16, 10),
    ("CVE-2025-8713", 17, 6),
]
PARAMS = {
    "fix_cves": [cve for cve, _major, _minor in FIXES],
    "fix_majors": [major for _cve, major, _minor in FIXES],
    "fix_minors": [minor for _cve, _major, minor in FIXES],
}

SQL = """
WITH server AS (
    SELECT %(server_version_num)s::int / 10000 AS major, %(server_version_num)s::int %% 10000 AS minor
),
missing AS (
    SELECT f.cve, f.minor, f.major || '.' || f.minor AS fixed_in
      FROM server AS s
      JOIN ROWS FROM (pg_catalog.unnest(%(fix_cves)s::text[]), pg_catalog.unnest(%(fix_majors)s::int[]),
                      pg_catalog.unnest(%(fix_minors)s::int[])) AS f(cve, major, minor)
        ON f.major = s.major AND s.minor < f.minor
)
SELECT NULL AS level,
       'server' AS object,
       'PostgreSQL ' || s.major || '.' || s.minor
       || CASE WHEN s.major < 13
               THEN ' is out of support and has none of the fixes for CVE-2024-10976 and CVE-2025-8713'
               ELSE ' lacks the fixes for ' || (SELECT pg_catalog.string_agg(m.cve || ' (' || m.fixed_in || ')', ', '
                                                                           ORDER BY m.minor, m.cve)
                                                  FROM missing AS m) END AS message,
       'upgrade to the latest minor release of PostgreSQL ' || s.major
       || CASE WHEN s.major < 13 THEN ' (or to a supported major: 13 or later)' ELSE '' END AS remedy
  FROM server AS s
 WHERE s.major < 13 OR EXISTS (SELECT FROM missing)
"""
