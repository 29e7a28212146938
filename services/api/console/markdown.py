"""Markdown to HTML for the console (the postmortem draft), safely.

markdown-it-py in CommonMark mode with tables, raw HTML off: any HTML in the text is shown as
text, and its link validation drops `javascript:`, `vbscript:`, `file:` and `data:` links
other than images. The one tag let through is `<br>`, which the draft writes for line breaks
inside table cells (its escaped form is put back; it carries no attributes to abuse).
"""

from typing import Final

from markdown_it import MarkdownIt

_RENDERER: Final = MarkdownIt("commonmark", {"html": False}).enable("table")


def html(text: str) -> str:
    rendered: str = _RENDERER.render(text)
    return rendered.replace("&lt;br&gt;", "<br>")
