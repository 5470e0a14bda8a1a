"""``agency-rls matrix --html``: one standalone page an auditor can open, sort and filter.

Why one self-contained file: the page is evidence. It is mailed, attached to tickets and opened
on machines without network access, so it carries its own CSS and JavaScript and loads nothing
(a Content-Security-Policy meta tag forbids any fetch, so a later edit cannot add one silently).

Why the grid is rendered as HTML on the server rather than built by script from embedded JSON:
the page still reads correctly with JavaScript off, and every dynamic value goes through
``html.escape`` in one place (role names are chosen by DBAs and may hold ``<``, ``&`` or quotes);
there is no JSON-in-``<script>`` to break out of. The script only sorts and hides rows.
"""

from __future__ import annotations

from html import escape

from agency_rls.checks.matrix import Matrix, PrincipalAccess, Privilege, TableAccess, scope_label, write_marks

_CSS = """
:root { color-scheme: light dark; --line: #d0d4da; --muted: #6b7280; --zero: #9ca3af;
        --denied: #b91c1c; --write: #92400e; --head: #f3f4f6; --hit: #e0f2fe; }
@media (prefers-color-scheme: dark) {
  :root { --line: #374151; --muted: #9ca3af; --zero: #6b7280; --denied: #f87171; --write: #fbbf24;
          --head: #1f2937; --hit: #0c4a6e; }
}
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
.meta, .legend { color: var(--muted); margin: .25rem 0; }
.controls { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; margin: 1rem 0 .5rem; }
.controls input[type=search] { font: inherit; padding: .3rem .5rem; min-width: 18rem; }
.wrap { overflow: auto; max-height: 80vh; border: 1px solid var(--line); }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .6rem; white-space: nowrap; }
thead th { position: sticky; top: 0; background: var(--head); z-index: 2; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button:focus-visible { outline: 2px solid currentColor; }
th[aria-sort=ascending] button::after { content: " \\25B2"; }
th[aria-sort=descending] button::after { content: " \\25BC"; }
td.role { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; position: sticky; left: 0;
          background: Canvas; z-index: 1; }
thead th:first-child { left: 0; z-index: 3; }
tbody tr:hover td { background: var(--hit); }
td.n { text-align: right; }
td.zero { color: var(--zero); }
td.denied { color: var(--denied); font-weight: 600; }
.w { color: var(--write); font-weight: 600; margin-left: .3rem; font-size: .85em; }
.missing { color: var(--denied); font-weight: 600; }
"""

_JS = """
(function () {
  "use strict";
  var table = document.getElementById("matrix");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var filter = document.getElementById("filter");
  var hideZero = document.getElementById("hide-zero");
  var shown = document.getElementById("shown");
  var headers = table.tHead.rows[0].cells;

  function key(row, index, numeric) {
    var cell = row.cells[index];
    if (numeric) { return parseFloat(cell.getAttribute("data-sort")); }
    return (cell.getAttribute("data-sort") || cell.textContent).toLowerCase();
  }

  function sortBy(index) {
    var th = headers[index];
    var numeric = th.getAttribute("data-type") === "num";
    var descending = th.getAttribute("aria-sort") === "ascending";
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var order = rows.map(function (row, position) { return [key(row, index, numeric), position, row]; });
    order.sort(function (a, b) {
      var result = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      if (descending) { result = -result; }
      return result || a[1] - b[1];
    });
    var fragment = document.createDocumentFragment();
    order.forEach(function (item) { fragment.appendChild(item[2]); });
    body.appendChild(fragment);
  }

  function applyFilter() {
    var needle = filter.value.trim().toLowerCase();
    var count = 0;
    rows.forEach(function (row) {
      var visible = (!needle || row.getAttribute("data-search").indexOf(needle) !== -1)
        && !(hideZero.checked && row.getAttribute("data-data") === "0");
      row.hidden = !visible;
      if (visible) { count++; }
    });
    shown.textContent = count + " of " + rows.length + " principals shown";
  }

  for (var i = 0; i < headers.length; i++) {
    headers[i].querySelector("button").addEventListener("click", sortBy.bind(null, i));
  }
  filter.addEventListener("input", applyFilter);
  hideZero.addEventListener("change", applyFilter);
  applyFilter();
})();
"""

_LEGEND = (
    "Each number is the count of rows the principal read when the matrix queried as it "
    "(SET LOCAL ROLE, read-only transaction, rolled back). Marks: I/U/D = INSERT/UPDATE/DELETE "
    "granted on the whole table; i/u = granted on some columns only. "
    "<b>denied</b> = SELECT refused (counts as 0). Click a column header to sort."
)


def _privilege_word(privilege: Privilege) -> str:
    return {Privilege.granted: "granted", Privilege.columns: "some columns", Privilege.denied: "denied"}[
        privilege
    ]


def _cell(table: str, access: TableAccess) -> str:
    """One grid cell: count (sort key), write marks, and a tooltip spelling it all out."""
    marks = write_marks(access)
    reads = "SELECT denied" if access.select_denied else f"{access.select} rows"
    tooltip = (
        f"{table}: {reads}; INSERT {_privilege_word(access.insert)}, "
        f"UPDATE {_privilege_word(access.update)}, DELETE {_privilege_word(access.delete)}"
    )
    if access.select_denied:
        css, sort, shown = "n denied", "-1", "denied"
    else:
        css, sort, shown = ("n zero" if access.select == 0 else "n"), str(access.select), str(access.select)
    mark_html = f'<span class="w">{escape(marks)}</span>' if marks else ""
    return f'<td class="{css}" data-sort="{sort}" title="{escape(tooltip)}">{escape(shown)}{mark_html}</td>'


def _row(principal: PrincipalAccess, tables: tuple[str, ...]) -> str:
    """One principal's row; ``data-search`` feeds the filter box, ``data-data`` the checkbox."""
    search = " ".join(
        part for part in (principal.role, principal.kind, principal.agency, principal.insurer) if part
    ).lower()
    missing = "" if principal.provisioned else ' <span class="missing">(no role)</span>'
    cells = [
        f'<td class="role">{escape(principal.role)}{missing}</td>',
        f"<td>{escape(principal.kind)}</td>",
        f"<td>{escape(scope_label(principal))}</td>",
        f"<td>{'yes' if principal.restricted else ''}</td>",
        *(_cell(name, principal.tables[name]) for name in tables),
    ]
    reads_data = "1" if principal.reads_data() else "0"
    return f'<tr data-search="{escape(search)}" data-data="{reads_data}">' + "".join(cells) + "</tr>"


def render_html(matrix: Matrix) -> str:
    """The standalone page for ``matrix``: inline CSS and JS, no external reference."""
    headers = [
        '<th scope="col" data-type="text"><button type="button">principal</button></th>',
        '<th scope="col" data-type="text"><button type="button">kind</button></th>',
        '<th scope="col" data-type="text"><button type="button">acts for</button></th>',
        '<th scope="col" data-type="text"><button type="button">restricted</button></th>',
        *(
            f'<th scope="col" data-type="num"><button type="button">{escape(name)}</button></th>'
            for name in matrix.tables
        ),
    ]
    rows = "\n".join(_row(principal, matrix.tables) for principal in matrix.principals)
    database = escape(matrix.database)
    taken_at = escape(matrix.taken_at.isoformat(timespec="seconds"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>agency-rls access matrix: {database}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Access matrix</h1>
<p class="meta">Database <b>{database}</b>, one snapshot taken at <b>{taken_at}</b>;
{len(matrix.principals)} principals, {len(matrix.tables)} tables.</p>
<p class="legend">{_LEGEND}</p>
<div class="controls">
<label>Filter principals <input id="filter" type="search" placeholder="role, kind, agency or insurer code" autocomplete="off"></label>
<label><input id="hide-zero" type="checkbox"> Hide principals that read no data (beyond the public insurer list and their own principal row)</label>
<span id="shown" aria-live="polite"></span>
</div>
<div class="wrap">
<table id="matrix">
<thead><tr>{"".join(headers)}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</div>
<script>{_JS}</script>
</body>
</html>
"""
