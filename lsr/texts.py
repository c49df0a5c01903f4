"""How documents become encoder input."""

from __future__ import annotations


def document_text(document: dict, title: bool = True) -> str:
    """BEIR "flat" text: `title + " " + text`, stripped (just the text when `title` is False)."""
    text = document.get("text") or ""
    head = document.get("title") or ""
    return f"{head} {text}".strip() if title else text.strip()
