"""report/tables.py: FitTable keeps every row on one line."""

import io

from rich.console import Console

from gradprobe.report.tables import Col, FitTable

# two names whose short forms clash at the width the numbers leave, so shorten() widens them
NAMES = [
    "model.encoder.layer.0.attention.output.LayerNorm",
    "model.encoder.layer.0.output.LayerNorm",
    "model.encoder.layer.0.attention.self.query",
    "model.encoder.layer.0.attention.self.value",
]


def _lines(table: FitTable, width: int) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(table.fit(width))
    return [line for line in buf.getvalue().splitlines() if line.startswith("│")]


def test_a_name_widened_to_stay_distinct_wrapped_onto_a_second_line():
    specs = [Col("layer", "name", 100), Col("type", "text", 90)] + [
        Col(f"stat {k}", "number", 50 - k) for k in range(6)
    ]
    rows = [[n, "LayerNorm", *["2.66e-6"] * 6] for n in NAMES]
    for width in (60, 70, 80):
        lines = _lines(FitTable(specs, rows), width)
        assert len(lines) == len(rows), (width, lines)  # no row folded onto two lines
        shown = [line.split("│")[1].strip() for line in lines]
        assert len(set(shown)) == len(shown)
