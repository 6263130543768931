"""Every relative link in the Markdown docs leads somewhere: to a file that exists and, with
``#anchor``, to a heading of that file as GitHub names it.

External links (``http:``, ``https:``, ``mailto:``) are not fetched. Fenced code blocks and
inline code are not read for links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = (
    "docs/*.md",
    "README.md",
    "mars_sdk/README.md",
    "plugins/*/README.md",
    "benchmarks/README.md",
)
EXTERNAL = re.compile(r"^(?:https?|mailto):", re.IGNORECASE)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
NOT_A_PARAGRAPH = re.compile(r"^\s*(?:$|#|>|\||[-*+][ \t]|\d+[.)][ \t])")
#: A code span ends where its paragraph does (at a blank line) at the latest.
CODE_SPAN = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
#: ``[text](target)`` and ``![alt](target)``, with an optional title. The text may hold one
#: level of brackets (``[`x[0]`](y)``) and run on to the next line, not past a blank one.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]\n]|\n(?![ \t]*\n)|\[[^\[\]]*\])*\]"  # [text]
    r"\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"  # (target
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"  # "title")
)
#: ``[label]: target`` reference definitions (not ``[^1]:`` footnotes).
REFERENCE = re.compile(r"^ {0,3}\[(?!\^)[^\]]+\]:[ \t]*(<[^>]*>|\S+)", re.MULTILINE)
HTML_ID = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_TAG = re.compile(r"<[^>]+>")
LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


def doc_files(root: Path = ROOT) -> list[Path]:
    found = {path for pattern in PATTERNS for path in root.glob(pattern) if path.is_file()}
    return sorted(found)


def prose(text: str) -> str:
    """``text`` with the lines of fenced code blocks blanked (line numbers stay)."""
    lines: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is not None:
            # A fence closes with the same character, at least as long, and nothing after.
            if stripped.startswith(fence) and not stripped.rstrip().strip(fence[0]):
                fence = None
            lines.append("")
            continue
        opening = FENCE.match(stripped)
        if opening is not None:
            fence = opening.group(1)
            lines.append("")
            continue
        lines.append(line)
    return "\n".join(lines)


def _outside_code(text: str) -> str:
    """``text`` with its inline code spans blanked (their links are examples, not links)."""
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def heading_text(markdown: str) -> str:
    """The text GitHub renders for a heading's Markdown: code, links and emphasis unwrapped."""
    parts: list[str] = []
    position = 0
    for span in CODE_SPAN.finditer(markdown):
        parts.append(_unwrap(markdown[position : span.start()]))
        parts.append(span.group(2).strip())
        position = span.end()
    parts.append(_unwrap(markdown[position:]))
    return "".join(parts)


def _unwrap(text: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = HTML_TAG.sub("", text)
    text = re.sub(r"(\*{1,3})(\S(?:.*?\S)?)\1", r"\2", text)
    text = re.sub(r"(?<![\w])(_{1,3})(\S(?:.*?\S)?)\1(?![\w])", r"\2", text)
    return text.replace("\\", "")


def slug(text: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped except ``-`` and
    ``_``, each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every ``#anchor`` a Markdown document has: its headings' slugs, repeated ones numbered
    ``-1``, ``-2``..., and the ids of its ``<a id=...>`` / ``<a name=...>`` tags."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    previous = ""
    for line in prose(text).splitlines():
        heading = ATX_HEADING.match(line)
        title: str | None = None
        if heading is not None:
            title = heading.group(2) or ""
        elif SETEXT_UNDERLINE.match(line) and not NOT_A_PARAGRAPH.match(previous):
            title = previous.strip()
        if title is not None:
            base = slug(heading_text(title))
            candidate = base
            while candidate in found:
                counts[base] = counts.get(base, 0) + 1
                candidate = f"{base}-{counts[base]}"
            found.add(candidate)
        found.update(HTML_ID.findall(line))
        previous = "" if heading is not None else line
    return found


@dataclass(frozen=True)
class Link:
    line: int
    target: str


def links(text: str) -> list[Link]:
    """The link targets of a Markdown document, outside code; a link's text may span lines."""
    body = _outside_code(prose(text))

    def line_of(position: int) -> int:
        return body.count("\n", 0, position) + 1

    found = [
        Link(line_of(match.start(1)), match.group(1).strip("<>"))
        for match in INLINE_LINK.finditer(body)
    ]
    found += [
        Link(line_of(match.start(1)), match.group(1).strip("<>"))
        for match in REFERENCE.finditer(body)
    ]
    return sorted(found, key=lambda link: link.line)


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of ``path``, one line each (empty: nothing)."""
    text = path.read_text(encoding="utf-8")
    problems: list[str] = []
    anchors_of: dict[Path, set[str]] = {}

    def anchors_in(target: Path) -> set[str]:
        if target not in anchors_of:
            anchors_of[target] = anchors(target.read_text(encoding="utf-8"))
        return anchors_of[target]

    where = path.relative_to(root)
    for link in links(text):
        if EXTERNAL.match(link.target):
            continue
        if SCHEME.match(link.target):
            problems.append(f"{where}:{link.line}: {link.target}: not a relative link")
            continue
        file_part, _, anchor = link.target.partition("#")
        # GitHub reads a path that starts with "/" from the repository's root.
        base = root if file_part.startswith("/") else path.parent
        target = (base / unquote(file_part).lstrip("/")).resolve() if file_part else path
        if not target.is_relative_to(root.resolve()):
            problems.append(f"{where}:{link.line}: {link.target}: outside the repository")
            continue
        if not target.exists():
            problems.append(f"{where}:{link.line}: {link.target}: no such file")
            continue
        if not anchor:
            continue
        anchor = unquote(anchor)
        if target.is_dir():
            problems.append(f"{where}:{link.line}: {link.target}: an anchor in a folder")
        elif target.suffix.lower() == ".md":
            if anchor not in anchors_in(target):
                problems.append(
                    f"{where}:{link.line}: {link.target}: no heading "
                    f"#{anchor} in {target.relative_to(root.resolve())}"
                )
        elif not LINE_ANCHOR.match(anchor):
            problems.append(f"{where}:{link.line}: {link.target}: #{anchor} is not a line")
    return problems


# --- The docs ---------------------------------------------------------------------------------


def test_the_docs_are_found():
    names = {str(path.relative_to(ROOT)) for path in doc_files()}
    assert {"README.md", "docs/plugins.md", "docs/events.md", "mars_sdk/README.md"} <= names
    assert "plugins/projects/README.md" in names
    assert "benchmarks/README.md" in names


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


# --- The checker itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Rate limits and usage guidelines", "rate-limits-and-usage-guidelines"),
        ("Retrying POST safely: `Idempotency-Key`", "retrying-post-safely-idempotency-key"),
        ("Errors: RFC 9457 problem details", "errors-rfc-9457-problem-details"),
        ("Settings (operators)", "settings-operators"),
        ("mars_health_checks", "mars_health_checks"),
        ("`mars_event_types`: declaring *events*", "mars_event_types-declaring-events"),
        (
            "Request limits, and what the HTTP server answers itself",
            "request-limits-and-what-the-http-server-answers-itself",
        ),
        ("A [linked](other.md) heading", "a-linked-heading"),
        ("What's new — 0.2", "whats-new--02"),
    ],
)
def test_slugs_follow_githubs_rules(heading, expected):
    assert slug(heading_text(heading)) == expected


def test_repeated_headings_are_numbered():
    text = "# Events\n\n## Results\n\ntext\n\n## Results\n\n### Results\n\nSetext\n------\n"
    assert anchors(text) == {"events", "results", "results-1", "results-2", "setext"}


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_missing_file_is_reported(tmp_path):
    _write(tmp_path, "docs/other.md", "# Other\n")
    page = _write(
        tmp_path,
        "docs/page.md",
        "# Page\n\nSee [other](other.md), [gone](gone.md) and [up](../README.md).\n"
        "From the root: [other](/docs/other.md), [gone](/other.md).\n"
        "Out of the repository: [passwd](../../../../../../../../../../etc/passwd).\n",
    )
    assert broken_links(page, tmp_path) == [
        "docs/page.md:3: gone.md: no such file",
        "docs/page.md:3: ../README.md: no such file",
        "docs/page.md:4: /other.md: no such file",
        "docs/page.md:5: ../../../../../../../../../../etc/passwd: outside the repository",
    ]


def test_a_missing_anchor_is_reported_here_and_in_another_file(tmp_path):
    _write(tmp_path, "docs/other.md", "# Other\n\n## Health checks\n")
    page = _write(
        tmp_path,
        "docs/page.md",
        "# Page\n\n## Two words\n\n"
        "[a](#two-words) [b](#page) [c](other.md#health-checks)\n"
        "[d](#two_words) [e](other.md#health)\n",
    )
    assert broken_links(page, tmp_path) == [
        "docs/page.md:6: #two_words: no heading #two_words in docs/page.md",
        "docs/page.md:6: other.md#health: no heading #health in docs/other.md",
    ]


def test_code_external_links_and_files_that_are_not_markdown(tmp_path):
    _write(tmp_path, "deploy/nginx.conf", "server {}\n")
    page = _write(
        tmp_path,
        "docs/page.md",
        "# Page\n\n"
        "```markdown\n[inside a fence](missing.md)\n```\n\n"
        "  ~~~\n  [indented fence](missing.md)\n  ~~~\n\n"
        "`[inline code](missing.md)` and [web](https://example.org/x#y), "
        "[mail](mailto:ops@example.org), [conf](../deploy/nginx.conf), "
        "[line](../deploy/nginx.conf#L1), [folder](../deploy/)\n\n"
        "[ref]: ../deploy/nowhere.conf\n"
        "[bad](../deploy/nginx.conf#server) [ftp](ftp://example.org/f)\n\n"
        "A [link whose text\nspans two lines](nowhere.md), `code\nover two lines [x](y.md)`.\n",
    )
    assert broken_links(page, tmp_path) == [
        "docs/page.md:13: ../deploy/nowhere.conf: no such file",
        "docs/page.md:14: ../deploy/nginx.conf#server: #server is not a line",
        "docs/page.md:14: ftp://example.org/f: not a relative link",
        "docs/page.md:17: nowhere.md: no such file",
    ]
