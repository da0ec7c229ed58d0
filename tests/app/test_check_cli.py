"""``gradprobe check``: exit 0 healthy, 1 with findings, 2 on bad usage (one line)."""

import json
import textwrap
from html.parser import HTMLParser

import pytest
import torch

from _factories import run_cli as run
from _factories import user_module

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def deep(depth=20, act="tanh", std=None):
        A = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[act]
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(32, 32), A()]
        model = nn.Sequential(*layers, nn.Linear(32, 4))
        for p in model.parameters():
            if p.dim() == 2 and std is None:
                nn.init.xavier_normal_(p, gain=5 / 3)
            elif p.dim() == 2:
                nn.init.normal_(p, std=std)
        return model

    class Tiny(nn.Sequential):
        def __init__(self):
            super().__init__(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))

    def boom():
        raise RuntimeError("factory failed")
    """
)


@pytest.fixture
def models(tmp_path, monkeypatch):
    with user_module(tmp_path, monkeypatch, "cli_models", MODELS) as folder:
        yield folder


def test_healthy_model_exits_0_and_prints_the_table(models, capsys):
    assert run(["check", "cli_models:deep", "--input-shape", "64,32"]) == 0
    out = capsys.readouterr().out
    assert "No findings" in out and "Linear" in out


def test_vanishing_model_exits_1_with_json_findings(models, capsys):
    args = ["check", "cli_models:deep", "--input-shape", "64,32", "--json"]
    assert run([*args, "--kwargs", '{"act": "sigmoid", "std": 0.05}']) == 1
    payload = json.loads(capsys.readouterr().out)
    assert not payload["healthy"]
    assert "vanishing" in {f["kind"] for f in payload["findings"]}


def test_class_factory_input_file_and_try_inits(models, capsys):
    torch.save(torch.randn(16, 8), models / "x.pt")
    args = ["check", "cli_models:Tiny", "--input", "x.pt", "--try-inits", "--json"]
    assert run(args) == 0
    ranking = json.loads(capsys.readouterr().out)["ranking"]
    assert {r["scheme"] for r in ranking} >= {"kaiming_normal", "lsuv", "as given"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cli_models:boom", "--input-shape", "2,32"], "factory failed"),
        (["cli_models:deep", "--input-shape", "2,31"], "forward failed"),
        (["no_such_module:deep", "--input-shape", "2,32"], "cannot import"),
        (["cli_models:nothing", "--input-shape", "2,32"], "no attribute"),
        (["cli_models", "--input-shape", "2,32"], "MODULE:FACTORY"),
        (["cli_models:deep", "--input-shape", "2,32", "--kwargs", "{bad"], "not valid JSON"),
        (["cli_models:deep", "--input-shape", "two"], "positive integers"),
        (["cli_models:deep", "--input", "missing.pt"], "does not exist"),
        (["cli_models:deep"], "exactly one of"),
        (["cli_models:deep", "--input-shape", "2,32", "--loss", "hinge"], "--loss"),
    ],
)
def test_bad_usage_exits_2_with_one_line(models, capsys, args, message):
    assert run(["check", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_untrusted_pickle_is_refused(models, capsys):
    import pickle

    (models / "evil.pt").write_bytes(pickle.dumps({"a": object()}, protocol=2))
    assert run(["check", "cli_models:Tiny", "--input", "evil.pt"]) == 2
    assert "weights_only" in capsys.readouterr().err


class _Tables(HTMLParser):
    """Rows of every ``<table id=...>`` (cell texts), each row's attributes, and the text of
    every element with an id."""

    def __init__(self):
        super().__init__()
        self.tables, self.attrs, self.text = {}, {}, {}
        self._table = self._row = self._cell = None
        self._ids = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "id" in a:
            self._table = a["id"]
            self.tables[self._table], self.attrs[self._table] = [], []
        elif tag == "tr" and self._table is not None:
            self._row = []
            self.attrs[self._table].append(a)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        if "id" in a:
            self._ids.append((tag, a["id"]))
            self.text[a["id"]] = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        if self._ids and self._ids[-1][0] == tag:
            self._ids.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        for _, i in self._ids:
            self.text[i] += data


def _terminal_rows(out: str, first: str) -> list[list[str]]:
    """The body rows of the rich table whose header row starts with ``first``; a cell that
    wrapped onto more lines is joined back."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("┃") and first in ln)
    rows: list[list[str]] = []
    for ln in lines[start + 1 :]:
        if ln.startswith("└"):
            break
        if not ln.startswith("│"):
            continue
        cells = [c.strip() for c in ln.strip("│").split("│")]
        if cells[0]:
            rows.append(cells)
        else:  # a wrapped line of the row above
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return rows


def test_the_html_of_check_try_inits_shows_the_ranking_in_the_terminals_order(models, capsys):
    args = ["check", "cli_models:deep", "--input-shape", "64,32", "--try-inits"]
    kwargs = '{"act": "relu", "std": 1.0, "depth": 8}'  # N(0, 1) weights: exploding
    assert run([*args, "--kwargs", kwargs, "--html", "check.html"]) == 1
    terminal = _terminal_rows(capsys.readouterr().out, "rank")
    page = _Tables()
    page.feed((models / "check.html").read_text())
    header, *body = page.tables["ranking-table"]
    assert header[:8] == ["rank", "scheme", "score", "±", "grad ratio", "max sat", "max dead",
                          "findings"]  # fmt: skip
    assert [r[:8] for r in body] == terminal  # the same cells, in the same order
    assert [r[0] for r in body] == [str(i) for i in range(1, len(body) + 1)]
    rows = page.attrs["ranking-table"][1:]
    picks = [i for i, a in enumerate(rows) if a.get("data-pick")]
    own = [i for i, a in enumerate(rows) if a.get("data-own")]
    assert picks == [0] and "pick" in rows[0]["class"].split()
    assert len(own) == 1 and body[own[0]][1] == "as given ◀ own init"
    # the finding's remedy is the ranking's pick
    pick = page.text["ranking-pick"].strip()
    assert pick == body[0][8] == "gp.init.apply(model, 'kaiming_normal')"
    finding = page.text["findings"]
    assert "exploding" in finding and pick in finding
