"""The documentation's commands, run as written.

Every fenced block whose info string is exactly `bash runnable`, in README.md and docs/*.md, is
run with `bash -e` from the project folder, in file order (README first, then docs/ by name),
against a fresh embedded installation: a new data folder whose embedded PostgreSQL is both the
source and the Dagster instance, loaded with 500 generated reviews and one complete batch,
`20260101T030000Z`. Each block must exit with 0.

Blocks that must not run (they need `make`, start a server, change or delete data, or need
Neon, systemd or Grafana) stay plain `bash`. Two guards keep the marking honest:
- an info string that looks like the marker but is not exactly it (`bash  runnable`,
  `bash-runnable`, `sh runnable`, `bash runable`) fails: such a block would silently never run;
- in the operations pages (README.md and the five pages of docs/ listed in `OPS_PAGES`), a plain
  `bash` block made only of read-only commands (`doctor`, `batches list`, `cleanup --dry-run`,
  `rbac audit`, `env`, `db status`, `db url`) fails: it can run, so it must be marked.
docs/cli.md, docs/data-contract.md and docs/scoring.md are scanned and counted, but their plain
blocks are transcripts of a session in their own scratch folder and are not checked by the
second guard.

The runbook anchors used by the code (`docs/runbooks.md#...` in the doctor's hints and the
alerts) must exist as headings, and the relative links of the operations pages must resolve.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from amazon_reviews.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
MARK = "bash runnable"
BATCH = "20260101T030000Z"
OPS_PAGES = ("architecture.md", "deployment.md", "operations.md", "runbooks.md", "security.md")
BLOCK_TIMEOUT_S = 300

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_AR = r"(?:\.venv/bin/)?amazon-reviews"
_READ_ONLY = [
    re.compile(rf"^{_AR} (?:doctor|batches list|env|db (?:status|url))(?:\s*\|\|\s*true)?$"),
    re.compile(rf"^{_AR} cleanup (?=.*--dry-run)[-\w ]*$"),
    re.compile(rf"^{_AR} rbac audit(?: --all)?$"),
    re.compile(rf'^eval "\$\({_AR} env\)"$'),
    re.compile(r"^[A-Z_]+=\S*$"),  # a plain variable assignment (BATCH=...)
]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    info: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, its body de-indented by the fence's indent."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip()
        body, j = [], i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence):
                if not close["info"].strip():
                    break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(path, i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def runnable_blocks() -> list[Block]:
    return [b for f in doc_files() for b in fenced_blocks(f) if b.info == MARK]


def _commands(body: str) -> list[str]:
    """Logical command lines: comments and blank lines dropped, continuations joined."""
    out, current = [], ""
    for raw in body.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            out.append(current.strip())
        current = ""
    return out


def _could_run(block: Block) -> bool:
    commands = _commands(block.body)
    return bool(commands) and all(any(p.match(c) for p in _READ_ONLY) for c in commands)


def scan_summary() -> str:
    rows = []
    for f in doc_files():
        blocks = fenced_blocks(f)
        marked = sum(b.info == MARK for b in blocks)
        plain = sum(b.info == "bash" for b in blocks)
        rows.append(f"  {f.relative_to(REPO)}: {marked} runnable, {plain} plain bash")
    return "scanned:\n" + "\n".join(rows)


def test_runnable_blocks_are_marked_exactly_and_none_is_forgotten() -> None:
    summary = scan_summary()
    print(summary)  # noqa: T201  (shown with -s: which files, how many runnable blocks)
    problems = []
    for f in doc_files():
        ops_page = f.name == "README.md" or f.name in OPS_PAGES
        for b in fenced_blocks(f):
            if b.info != MARK and "run" in b.info.lower():
                problems.append(f"{b.where}: info string {b.info!r} is not exactly {MARK!r}")
            if ops_page and b.info == "bash" and _could_run(b):
                problems.append(f"{b.where}: read-only block left plain; mark it {MARK!r}")
    assert not problems, "\n".join(problems) + "\n" + summary
    assert runnable_blocks(), "no runnable block found at all\n" + summary
    for name in OPS_PAGES:
        assert any(b.path.name == name for b in runnable_blocks()), f"docs/{name}: none runnable"


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced blocks."""
    out, fence = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _FENCE.match(line)
        if fence:
            if m and m["fence"][0] == fence[0] and len(m["fence"]) >= len(fence):
                fence = "" if not m["info"].strip() else fence
            continue
        if m:
            fence = m["fence"]
            continue
        out.append(line)
    return out


def github_anchors(path: Path) -> set[str]:
    """The anchors GitHub generates for the headings of a Markdown file."""
    anchors: set[str] = set()
    for line in prose_lines(path):
        m = re.match(r"^#{1,6} +(.+?) *$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-")
        candidate, n = slug, 1
        while candidate in anchors:
            candidate, n = f"{slug}-{n}", n + 1
        anchors.add(candidate)
    return anchors


def test_runbook_anchors_used_by_the_code_exist() -> None:
    used = set()
    for source in (REPO / "amazon_reviews").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        used |= set(re.findall(r"runbooks\.md#([a-z0-9-]+)", text))
        if re.search(r"\bRUNBOOK\b", text):
            used |= set(re.findall(r"\{RUNBOOK\}#([a-z0-9-]+)", text))
    assert used >= {"database-connection-impossible", "gold-missing-alert", "a-run-failed"}
    missing = used - github_anchors(DOCS / "runbooks.md")
    assert not missing, f"docs/runbooks.md lacks headings for {sorted(missing)}"


def test_links_of_the_operations_pages_resolve() -> None:
    broken = []
    for name in OPS_PAGES:
        page = DOCS / name
        text = "\n".join(prose_lines(page))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"docs/{name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in github_anchors(dest):
                broken.append(f"docs/{name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


@pytest.fixture
def embedded_install(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """A fresh data folder whose own embedded server is the source and the instance, with
    500 generated reviews and one complete batch; the server is stopped afterwards."""
    for key in ("NEON_DB_URL", "DAGSTER_PG_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(key, raising=False)
    try:
        assert main(["generate", "--reviews", "500", "--load"]) == 0
        assert main(["run", "--batch-id", BATCH]) == 0
        shell_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NEON_DB_URL", "DAGSTER_PG_URL", "DAGSTER_HOME")
        }
        shell_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        yield shell_env
    finally:
        main(["db", "down"])


def test_runnable_blocks_exit_0(embedded_install: dict[str, str]) -> None:
    blocks = runnable_blocks()
    assert blocks, scan_summary()
    timings = []
    for b in blocks:
        started = time.monotonic()
        out = subprocess.run(
            ["bash", "-e", "-c", b.body],
            cwd=REPO,
            env=embedded_install,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        timings.append(f"{time.monotonic() - started:5.1f}s  {b.where}")
        assert out.returncode == 0, (
            f"{b.where} exited with {out.returncode}\n--- block\n{b.body}"
            f"--- stdout\n{out.stdout[-4000:]}\n--- stderr\n{out.stderr[-4000:]}"
        )
    print(scan_summary() + "\nblock timings:\n" + "\n".join(timings))  # noqa: T201
