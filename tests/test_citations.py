"""Every citation in the repository points at something that ships with it.

The team's reading material (design notes, the seed-layer specification, the
notes on existing suites, the list of bug classes, kept in a folder beside the
repository) is not part of refnorm: neither a reader of a checkout nor a
reader of the built documentation can follow a reference to it.  What refnorm
cites instead is a page of its documentation, a section of ``spec/FORMAT.md``,
a paper or an upstream issue.  These tests scan every text file of the
checkout (tracked, or new and not ignored; the binary fixtures under
``spec/golden/`` are skipped, and so is this file, whose examples are
citations on purpose) and check:

1. no file cites the outside documents (:data:`OUTSIDE`; names that merely
   contain ``SPEC``, such as ``SPEC_FILES`` or ``_CHECKOUT_SPEC``, are code,
   not citations);
2. every in-repository reference resolves:

   * ``docs/<page>.md`` and ``docs/<page>.md#<anchor>``, in any file: the page
     exists and the anchor is a MyST label ``(<anchor>)=`` of that page or the
     slug of one of its headings of level 1-3 (``myst_heading_anchors = 3``),
     counting the files the page includes;
   * in the docs pages: relative links ``[text](<page>.md#<anchor>)``, the
     ``{ref}`` roles (a label defined in some page) and ``{doc}`` roles (a page);
   * ``FORMAT.md section N`` / ``FORMAT.md §N``: ``spec/FORMAT.md`` has a
     heading numbered N;
3. the edge-case page (``docs/edge-cases.md``) defines E1..E28, every case
   family it names exists in ``spec/cases.toml``, and section En lists every
   family whose description names En.

Each failure names the file, the line and the text.  Skipped outside a git
checkout (an installed package has no docs to resolve against).
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FORMAT = ROOT / "spec" / "FORMAT.md"
EDGE_CASES = DOCS / "edge-cases.md"
NUM_EDGE_CASES = 28

#: Citations of the documents outside the repository, each with what it catches.
OUTSIDE = [
    # the name followed by a section number or sign, "'s", ".md" or a word (the examples are in
    # test_outside_citations_are_found, spelled so that the repository holds no citation itself);
    # not SPEC_FILES, _CHECKOUT_SPEC, "SPEC = Path(...)", "SPEC / 'cases.toml'", "spec/FORMAT.md".
    re.compile(r"(?<![\w.])SPEC(?:'s\b|\.md\b|\s*§|\s+\d|\s+[A-Za-z])"),
    re.compile(r"(?i)(?<![\w/])spec(?:'s)?\s*§"),
    # "DESIGN §4", "DESIGN 4", "DESIGN section 2", "DESIGN.md"
    re.compile(r"(?<![\w.])DESIGN(?:\.md\b|\s*§|\s+\d|\s+section\b)"),
    # the notes on existing suites, by any spelling of their name
    re.compile(r"(?i)\bconformance[-_ ]notes\b"),
    # the list of bug classes, by its file name or with an entry ("<name> A1")
    re.compile(r"\bBUG-CLASS(?:ES)?\b|(?i:\bbug-classes\.md\b)"),
    # the directory itself
    re.compile(r"\.\./" r"shared\b|/work/" r"shared\b|\bshared/(?:seeds|DESIGN|SPEC|CONFORMANCE|BUG)"),
]

#: ``docs/<page>.md`` with an optional ``#anchor``, not part of a longer path or URL.
DOCS_REF = re.compile(r"(?<![\w/.:-])docs/((?:[\w-]+/)*[\w.-]+?\.md)(?:#([\w-]+))?")
#: A relative Markdown link to another page, in a docs page.
MD_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|/|#)([^)\s#]+\.md)(?:#([^)\s]+))?\)")
REF_ROLE = re.compile(r"\{ref\}`(?:[^`<]*<([^>`]+)>|([^`]+))`")
DOC_ROLE = re.compile(r"\{doc\}`(?:[^`<]*<([^>`]+)>|([^`]+))`")
FORMAT_REF = re.compile(r"FORMAT\.md,?\s+(?:§\s*|section\s+)(\d+(?:\.\d+)?)")

LABEL = re.compile(r"^\(([^()\s]+)\)=\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INCLUDE = re.compile(r"^```\{include\}\s+(\S+)")
HEADING_OFFSET = re.compile(r"^:heading-offset:\s*(\d+)")
FENCE = re.compile(r"^\s*(```|~~~)")


# ----------------------------------------------------------------------------- the files


def _files() -> list[Path]:
    """Tracked files and new files that are not ignored; no binary fixtures."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing to resolve citations against")
    paths = []
    for name in sorted(set(out.decode().split("\0")) - {""}):
        path = ROOT / name
        if not path.is_file() or (name.startswith("spec/golden/") and not name.endswith(".json")):
            continue
        if path == Path(__file__).resolve():
            continue  # its examples cite the outside documents on purpose
        if b"\0" in path.read_bytes()[:8192]:
            continue  # binary
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def files() -> list[Path]:
    return _files()


def _lines(path: Path):
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ----------------------------------------------------------------------------- anchors of a page


def slug(title: str) -> str:
    """MyST's GitHub-style heading slug of ``title`` (inline code marks removed)."""
    text = title.replace("`", "").lower().replace(" ", "-")
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", text)


def _anchors(page: Path, offset: int = 0, seen=None) -> set[str]:
    """Labels and level 1-3 heading slugs of a Markdown page and of the files it includes."""
    seen = set() if seen is None else seen
    if page in seen or not page.is_file():
        return set()
    seen.add(page)
    found: set[str] = set()
    lines = _lines(page)
    fence = None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if m and fence is None:
            inc = INCLUDE.match(line.strip())
            if inc:
                off = 0
                for opt in lines[i + 1:i + 4]:
                    if (o := HEADING_OFFSET.match(opt.strip())):
                        off = int(o.group(1))
                found |= _anchors((page.parent / inc.group(1)).resolve(), offset + off, seen)
            fence = m.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        if (m := LABEL.match(line.strip())):
            found.add(m.group(1).lower())
        elif (m := HEADING.match(line)) and len(m.group(1)) + offset <= 3:
            found.add(slug(m.group(2)))
    return found


_ANCHOR_CACHE: dict[Path, set[str]] = {}


def anchors(page: Path) -> set[str]:
    page = page.resolve()
    if page not in _ANCHOR_CACHE:
        _ANCHOR_CACHE[page] = _anchors(page)
    return _ANCHOR_CACHE[page]


def _all_labels() -> set[str]:
    labels = set()
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts:
            continue
        labels |= {m.group(1).lower() for line in _lines(page) if (m := LABEL.match(line.strip()))}
    return labels


def _format_sections() -> set[str]:
    return {m.group(1) for line in _lines(FORMAT) if (m := re.match(r"^#{2,3}\s+(\d+(?:\.\d+)?)\.?\s", line))}


# ----------------------------------------------------------------------------- the checks


def outside_citations(text: str) -> list[str]:
    """The citations of outside documents in ``text``."""
    return [m.group(0) for pattern in OUTSIDE for m in pattern.finditer(text)]


def unresolved(text: str, where: Path, labels: set[str] | None = None) -> list[str]:
    """The in-repository references in ``text`` (a line of file ``where``) that do not resolve."""
    bad = []
    for m in DOCS_REF.finditer(text):
        page, anchor = DOCS / m.group(1), m.group(2)
        if not page.is_file():
            bad.append(f"{m.group(0)} (no such page)")
        elif anchor and anchor.lower() not in anchors(page):
            bad.append(f"{m.group(0)} (no label or heading {anchor!r} in docs/{m.group(1)})")
    for m in FORMAT_REF.finditer(text):
        if m.group(1) not in _format_sections():
            bad.append(f"{m.group(0)} (spec/FORMAT.md has no section {m.group(1)})")
    if where.suffix == ".md" and DOCS in where.parents:
        labels = _all_labels() if labels is None else labels
        for m in MD_LINK.finditer(text):
            page, anchor = (where.parent / m.group(1)).resolve(), m.group(2)
            if not page.is_file():
                bad.append(f"{m.group(0)} (no such page)")
            elif anchor and anchor.lower() not in anchors(page):
                bad.append(f"{m.group(0)} (no label or heading {anchor!r} there)")
        for m in REF_ROLE.finditer(text):
            label = (m.group(1) or m.group(2)).strip().lower()
            if label not in labels:
                bad.append(f"{m.group(0)} (no label {label!r} in docs/)")
        for m in DOC_ROLE.finditer(text):
            target = (m.group(1) or m.group(2)).strip()
            base = DOCS if target.startswith("/") else where.parent
            if not (base / (target.lstrip("/") + ".md")).is_file():
                bad.append(f"{m.group(0)} (no such page)")
    return bad


def _report(hits: dict[str, list[str]], what: str, show: int = 5) -> str:
    total = sum(len(v) for v in hits.values())
    lines = [f"{total} {what} in {len(hits)} files:"]
    for name, items in sorted(hits.items()):
        lines.append(f"  {name}: {len(items)}")
        lines.extend(f"    {item}" for item in items[:show])
        if len(items) > show:
            lines.append(f"    ... and {len(items) - show} more")
    return "\n".join(lines)


def test_no_citation_of_documents_outside_the_repository(files):
    hits = defaultdict(list)
    for path in files:
        for n, line in enumerate(_lines(path), 1):
            for cite in outside_citations(line):
                hits[_rel(path)].append(f"line {n}: {cite!r} in {line.strip()[:140]!r}")
    assert not hits, _report(hits, "citations of documents outside the repository "
                                   "(cite a docs page and label, spec/FORMAT.md, a paper or an upstream issue)")


def test_in_repository_references_resolve(files):
    labels = _all_labels()
    hits = defaultdict(list)
    for path in files:
        for n, line in enumerate(_lines(path), 1):
            for bad in unresolved(line, path, labels):
                hits[_rel(path)].append(f"line {n}: {bad}")
    assert not hits, _report(hits, "references that do not resolve")


def _families() -> dict[str, str]:
    with open(ROOT / "spec" / "cases.toml", "rb") as f:
        cases = tomllib.load(f)["case"]
    return {f"{c['op']}/{c['name']}": c.get("description", "") for c in cases}


def _edge_case_sections() -> dict[int, str]:
    """E number -> the text of its section of docs/edge-cases.md."""
    sections, current = {}, None
    for line in _lines(EDGE_CASES):
        m = LABEL.match(line.strip())
        if m:
            e = re.fullmatch(r"e(\d+)", m.group(1).lower())
            current = int(e.group(1)) if e else None
            if current is not None:
                sections[current] = ""
            continue
        if current is not None:
            sections[current] += line + "\n"
    return sections


def test_edge_case_page_lists_the_cases_of_each_entry():
    families = _families()
    ops = {name.split("/")[0] for name in families}
    sections = _edge_case_sections()
    assert sorted(sections) == list(range(1, NUM_EDGE_CASES + 1)), \
        f"docs/edge-cases.md must define the labels (e1)= ... (e{NUM_EDGE_CASES})=, found {sorted(sections)}"
    problems = []
    for e, text in sorted(sections.items()):
        named = {m.group(1) for m in re.finditer(r"`(\w+/\w[\w.+-]*)`", text) if m.group(1).split("/")[0] in ops}
        problems += [f"E{e}: `{name}` is not a case family of spec/cases.toml" for name in sorted(named - set(families))]
        cited = {name for name, desc in families.items() if re.search(rf"\bE{e}\b", desc)}
        problems += [f"E{e}: `{name}` names E{e} in its description but is not listed in section E{e}"
                     for name in sorted(cited - named)]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- the checks can fail


# built here so that no file of the repository cites them
_S, _C, _B, _D = "SP" + "EC", "CONFORMANCE" + "-NOTES", "BUG" + "-CLASSES", ".." + "/shared"


@pytest.mark.parametrize("text", [
    f"derived ({_S} 3.5)", f"{_S} §2 says", f"({_S} section 7)", f"SEED LAYERS ({_S} 3-6)", f"{_S}'s numerical notes",
    f"{_S} prints 10 decimals", f"see seeds/{_S}.md", "the spec §2.5", f"{_C} E7",
    "recorded in the project's conformance" + " notes", "DESIGN §4", "DESIGN.md", f"{_B} A1",
    f"{_D}/{_C}.md", "/work" + "/shared" + "/DESIGN.md",
])
def test_outside_citations_are_found(text):
    assert outside_citations(text), text


@pytest.mark.parametrize("text", [
    'SPEC_FILES = ("cases.toml",)', "_CHECKOUT_SPEC / 'cases.toml'", "SPEC = Path(__file__).parent / 'spec'",
    "if not (SPEC / 'cases.toml').is_file():", "SPEC.glob(pattern)", "_SPEC_FIELDS", "spec/FORMAT.md section 7",
    "a shared 2-core machine", "Bug class: eps placement", "the conformance harness", "__shared__ T sh[kBlock];",
])
def test_code_and_prose_are_not_citations(text):
    assert not outside_citations(text), text


def test_unresolved_references_are_found():
    here = ROOT / "refnorm" / "x.py"
    assert not unresolved("docs/edge-cases.md#e7 and docs/ops/layer_norm.md#the-backward-step-by-step", here)
    assert not unresolved("docs/ops/index.md#seed-layers; spec/FORMAT.md section 4.1; FORMAT.md §7", here)
    for bad in ("docs/edge-cases.md#e99", "docs/no-such-page.md", "docs/ops/layer_norm.md#no-such-section",
                "spec/FORMAT.md section 42"):
        assert unresolved(bad, here), bad
    page = DOCS / "differences.md"
    assert not unresolved("{ref}`E7 <e7>`, [LN](ops/layer_norm.md#the-backward-step-by-step), {doc}`edge-cases`", page)
    for bad in ("{ref}`E99 <e99>`", "{ref}`no-such-label`", "[x](ops/nope.md)", "[x](edge-cases.md#nope)",
                "{doc}`nope`"):
        assert unresolved(bad, page), bad
