"""The spec's message tables are the catalog's, and the docs name what exists."""

from __future__ import annotations

from pathlib import Path

from tools.protocol_docs import catalog_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_protocol_md_carries_the_catalog_tables_verbatim() -> None:
    doc = (DOCS / "protocol.md").read_text()
    messages, status = catalog_markdown().split("\n### Status codes\n")
    assert messages in doc, "message tables differ: paste python -m tools.protocol_docs"
    assert status.strip() in doc, "status table differs: paste python -m tools.protocol_docs"


def test_readme_names_the_two_commands_and_existing_docs() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for name in ("protocol.md", "protocol-vectors.json", "micropython-vm.md", "performance.md"):
        assert f"docs/{name}" in readme
        assert (DOCS / name).exists()
