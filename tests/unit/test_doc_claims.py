"""The conformance statement and the threat model name the tests that prove their claims.

Every pytest node id written in ``docs/conformance.md`` and ``docs/threat-model.md``
(backticked ``tests/...py::name`` or ``tests/...py::Class::name``, a ``[param]`` suffix
ignored) must name a test function that exists, found by parsing the file with ``ast``, so
the documents cannot drift from the suite. The conformance tables must also keep their
shape: a known status on every row, a test on every implemented row, a reason on every
row that is not implemented, and a row for every section they promise to cover.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / "docs" / "conformance.md"
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
DOCS = (CONFORMANCE, THREAT_MODEL)

# `tests/a/b.py::test_x`, `tests/a/b.py::Class::test_x`, either with a `[param]` suffix.
NODE_ID = re.compile(
    r"(?P<path>tests/[A-Za-z0-9_/]+\.py)"
    r"::(?P<first>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:::(?P<second>[A-Za-z_][A-Za-z0-9_]*))?"
    r"(?:\[[^\]`]*\])?"
)
# Anything backticked that looks like a node id, well-formed or not.
CITATION = re.compile(r"`(tests/[^`]*::[^`]*)`")

IMPLEMENTED = "implemented"
LIMITED = "implemented with limits"
UNTESTED = "implemented, untested"
NOT_IMPLEMENTED = "not implemented"
STATUSES = {IMPLEMENTED, LIMITED, UNTESTED, NOT_IMPLEMENTED}
MIN_REASON_CHARS = 30

# What docs/conformance.md promises to cover: RFC 8555 section prefixes, and one table
# per specification (its ``## `` heading starts with the name).
RFC8555_SECTIONS = (
    *(f"§6.{n}" for n in range(1, 8)),
    *(f"§7.{n}" for n in range(1, 7)),
    *(f"§8.{n}" for n in range(1, 5)),
    "§11",
)
SPEC_TABLES = (
    "RFC 8555",
    "RFC 8737",
    "RFC 8738",
    "RFC 8659 and RFC 8657",
    "RFC 9773",
    "draft-aaron-acme-profiles",
)
# Threat-model sections that describe rather than defend, so they need not name tests.
DESCRIPTIVE_SECTIONS = {"How to read this", "Incident catalogue", "Out of scope"}


@dataclass(frozen=True)
class Citation:
    doc: Path
    line: int
    text: str  # the whole line the citation is on
    path: str
    names: tuple[str, ...]  # (function,) or (class, function)

    @property
    def node_id(self) -> str:
        return "::".join((self.path, *self.names))

    def where(self) -> str:
        return f"{self.doc.name}:{self.line}: {self.node_id}"


@dataclass(frozen=True)
class Row:
    table: str  # the ``## `` heading above the table
    cells: tuple[str, ...]
    line: int

    @property
    def status(self) -> str:
        return self.cells[2]

    @property
    def tests(self) -> str:
        return self.cells[3]

    @property
    def notes(self) -> str:
        return self.cells[4]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def citations(doc: Path) -> list[Citation]:
    found: list[Citation] = []
    for number, line in enumerate(read(doc).splitlines(), start=1):
        for raw in CITATION.findall(line):
            match = NODE_ID.fullmatch(raw)
            if match is None:
                continue  # reported by test_every_citation_is_a_well_formed_node_id
            second = match["second"]
            names = (match["first"],) if second is None else (match["first"], second)
            found.append(Citation(doc, number, line, match["path"], names))
    return found


@cache
def parsed(path: str) -> ast.Module | None:
    file = ROOT / path
    if not file.is_file():
        return None
    return ast.parse(read(file), filename=path)


def _functions(body: list[ast.stmt]) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {
        node.name: node for node in body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def find_in(
    module: ast.Module, names: tuple[str, ...]
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """``(function,)`` at module level, or ``(class, function)``: a method of a class
    defined at module level."""
    if len(names) == 1:
        return _functions(module.body).get(names[0])
    class_name, function_name = names
    for node in module.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return _functions(node.body).get(function_name)
    return None


def find_test(citation: Citation) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    module = parsed(citation.path)
    return None if module is None else find_in(module, citation.names)


def is_xfail(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("mark.xfail" in ast.unparse(d) for d in function.decorator_list)


def table_rows(doc: Path) -> list[Row]:
    """The body rows of every markdown table, with the ``## `` heading they sit under."""
    rows: list[Row] = []
    heading = ""
    header_seen = False
    for number, line in enumerate(read(doc).splitlines(), start=1):
        if line.startswith("## "):
            heading, header_seen = line[3:].strip(), False
            continue
        if not line.startswith("|"):
            header_seen = False
            continue
        cells = tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
        if all(set(cell) <= set("-: ") for cell in cells):
            continue  # the separator row
        if not header_seen:
            header_seen = True  # the first row of a table names its columns
            continue
        rows.append(Row(heading, cells, number))
    return rows


# --- node ids --------------------------------------------------------------------------


FINDER_SAMPLE = """
import pytest

def test_plain(): ...

async def test_async(): ...

@pytest.mark.xfail(strict=True, reason="known bug")
def test_known_bug(): ...

class TestGroup:
    def test_method(self): ...

def helper():
    def test_nested(): ...
"""


def test_the_finder_knows_functions_methods_and_xfail() -> None:
    module = ast.parse(FINDER_SAMPLE)
    found: list[tuple[str, ...]] = [("test_plain",), ("test_async",), ("test_known_bug",)]
    for names in found:
        assert find_in(module, names) is not None, names
    assert find_in(module, ("TestGroup", "test_method")) is not None
    absent: list[tuple[str, ...]] = [
        ("test_method",),
        ("test_nested",),
        ("TestGroup", "test_plain"),
        ("x", "y"),
    ]
    for names in absent:
        assert find_in(module, names) is None, names
    known_bug, plain = find_in(module, ("test_known_bug",)), find_in(module, ("test_plain",))
    assert known_bug is not None and is_xfail(known_bug)
    assert plain is not None and not is_xfail(plain)
    match = NODE_ID.fullmatch("tests/a/b_c.py::TestGroup::test_method[case-1]")
    assert match is not None and (match["path"], match["first"], match["second"]) == (
        "tests/a/b_c.py",
        "TestGroup",
        "test_method",
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_exists_and_cites_tests(doc: Path) -> None:
    assert doc.is_file(), f"{doc.relative_to(ROOT)} is missing"
    assert len(citations(doc)) >= 20, f"{doc.name} names hardly any tests"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_citation_is_a_well_formed_node_id(doc: Path) -> None:
    bad = [
        f"{doc.name}:{number}: `{raw}`"
        for number, line in enumerate(read(doc).splitlines(), start=1)
        for raw in CITATION.findall(line)
        if NODE_ID.fullmatch(raw) is None
    ]
    assert not bad, "not a pytest node id (tests/...py::name[::name]):\n" + "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_cited_test_exists(doc: Path) -> None:
    missing = [
        f"{c.where()}: " + ("no such file" if parsed(c.path) is None else "no such test")
        for c in citations(doc)
        if find_test(c) is None
    ]
    assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_xfail_tests_are_cited_only_where_the_doc_says_so(doc: Path) -> None:
    """A test expected to fail proves nothing: it may only be named on a line that says it
    is marked xfail, and a line that says so must name one that still is."""
    wrong = []
    for citation in citations(doc):
        function = find_test(citation)
        if function is None:
            continue  # reported by test_every_cited_test_exists
        says_xfail = "xfail" in citation.text
        if is_xfail(function) and not says_xfail:
            wrong.append(f"{citation.where()} is marked xfail; say so on that line")
    for number, line in enumerate(read(doc).splitlines(), start=1):
        if "xfail" not in line:
            continue
        cited = [c for c in citations(doc) if c.line == number]
        if cited and not any((f := find_test(c)) is not None and is_xfail(f) for c in cited):
            wrong.append(f"{doc.name}:{number} mentions xfail but names no xfail test")
    assert not wrong, "\n".join(wrong)


# --- the conformance tables ------------------------------------------------------------


def test_conformance_rows_have_five_cells_and_a_known_status() -> None:
    rows = table_rows(CONFORMANCE)
    assert rows, "no conformance rows found"
    bad = [
        f"line {r.line}: {r.cells[:3]}"
        for r in rows
        if len(r.cells) != 5 or r.status not in STATUSES
    ]
    assert not bad, f"rows need 5 cells and a status in {sorted(STATUSES)}:\n" + "\n".join(bad)


def test_every_not_implemented_row_gives_a_reason() -> None:
    rows = [r for r in table_rows(CONFORMANCE) if r.status == NOT_IMPLEMENTED]
    assert rows, "no 'not implemented' rows: is the status column still parsed?"
    unexplained = [
        f"line {r.line}: {r.cells[0]} {r.cells[1]}"
        for r in rows
        if len(r.notes.strip(" -—")) < MIN_REASON_CHARS
    ]
    assert not unexplained, "'not implemented' without a reason:\n" + "\n".join(unexplained)


def test_every_implemented_row_names_a_test() -> None:
    rows = [r for r in table_rows(CONFORMANCE) if r.status in (IMPLEMENTED, LIMITED)]
    untested = [
        f"line {r.line}: {r.cells[0]} {r.cells[1]}"
        for r in rows
        if not any(NODE_ID.fullmatch(raw) for raw in CITATION.findall(r.tests))
    ]
    assert not untested, (
        "an implemented row must name the test that proves it (or say 'implemented, "
        "untested'):\n" + "\n".join(untested)
    )


def test_every_limited_or_untested_row_says_what_is_missing() -> None:
    rows = [r for r in table_rows(CONFORMANCE) if r.status in (LIMITED, UNTESTED)]
    vague = [
        f"line {r.line}: {r.cells[0]} {r.cells[1]}"
        for r in rows
        if len(r.notes.strip(" -—")) < MIN_REASON_CHARS
    ]
    assert not vague, "say which limits apply, or where the untested code is:\n" + "\n".join(vague)


def test_conformance_covers_every_promised_section() -> None:
    rows = table_rows(CONFORMANCE)
    tables = {r.table for r in rows}
    absent = [spec for spec in SPEC_TABLES if not any(t.startswith(spec) for t in tables)]
    assert not absent, f"no table for {absent}; tables: {sorted(tables)}"
    rfc8555 = [r.cells[0] for r in rows if r.table.startswith("RFC 8555")]
    missing = [s for s in RFC8555_SECTIONS if not any(c.startswith(s) for c in rfc8555)]
    assert not missing, f"RFC 8555 sections without a row: {missing}"


# --- the threat model ------------------------------------------------------------------


def _sections(doc: Path) -> dict[str, str]:
    """``## `` heading -> its body."""
    parts = re.split(r"^## (.+)$", read(doc), flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_every_threat_model_section_names_its_tests() -> None:
    sections = _sections(THREAT_MODEL)
    assert len(sections) >= 10, sorted(sections)
    bare = [
        title
        for title, body in sections.items()
        if title not in DESCRIPTIVE_SECTIONS
        and not any(NODE_ID.fullmatch(raw) for raw in CITATION.findall(body))
    ]
    assert not bare, f"threat-model sections that name no test: {bare}"
