"""Reading a benchmark's report in the bench tests: the rows of its markdown tables."""


def table_rows(report, num_cells):
    """The data rows of the markdown tables of `report` that have `num_cells` columns.

    Returns:
      list of rows, each a list of its cells (stripped strings); header rows (those followed by
      a "|---|" line) and separator rows are left out.
    """
    lines = [line.strip() for line in report.splitlines()]
    rows = []
    for k, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        if k + 1 < len(lines) and lines[k + 1].startswith("|---"):
            continue  # a header
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == num_cells:
            rows.append(cells)
    return rows
