"""Markdown → safe HTML for feeds and digests: sanitized with nh3, every link and image URL absolute."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urljoin

import markdown
import nh3

_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_EXTENSIONS = ["extra", "sane_lists"]
_URL_ATTRS = {"href", "src", "cite", "poster"}
_ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) - {"script", "iframe", "style", "object", "embed", "form", "input"}
_ALLOWED_ATTRIBUTES = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
_ALLOWED_ATTRIBUTES.setdefault("a", set()).update({"href", "title"})
_ALLOWED_ATTRIBUTES.setdefault("img", set()).update({"src", "alt", "title", "width", "height"})
_ALLOWED_ATTRIBUTES.setdefault("td", set()).add("align")
_ALLOWED_ATTRIBUTES.setdefault("th", set()).add("align")


def xml_safe(text: str) -> str:
    """Drop characters XML 1.0 forbids (C0 controls other than tab, CR, LF; U+FFFE, U+FFFF)."""
    return _CONTROL_RE.sub("", text)


@lru_cache(maxsize=1)
def _markdown() -> markdown.Markdown:
    return markdown.Markdown(extensions=_EXTENSIONS, output_format="html")


def sanitize(html: str, base_url: str) -> str:
    """Remove scripts, frames, event handlers and unsafe URLs; make relative URLs absolute against base_url."""

    def absolutize(tag: str, attr: str, value: str) -> str | None:
        if attr in _URL_ATTRS:
            return urljoin(base_url, value.strip())
        return value

    return nh3.clean(
        xml_safe(html),
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        attribute_filter=absolutize,
        link_rel="noopener",
    )


def markdown_html(text: str, base_url: str) -> str:
    """A Markdown body → sanitized HTML with absolute URLs."""
    md = _markdown()
    md.reset()
    return sanitize(md.convert(text), base_url)


def inline_html(text: str, base_url: str) -> str:
    """A one-paragraph Markdown snippet (an excerpt) → sanitized inline HTML without the <p> wrapper."""
    html = markdown_html(text, base_url).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return html
