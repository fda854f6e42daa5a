"""Markdown → safe HTML for feeds and digests: sanitized with nh3, every link and image URL absolute."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urljoin

from ..text import xml_safe

_EXTENSIONS = ["extra", "sane_lists"]
_URL_ATTRS = {"href", "src", "cite", "poster"}
_FORBIDDEN_TAGS = {"script", "iframe", "style", "object", "embed", "form", "input"}
_EXTRA_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title", "width", "height"},
                     "td": {"align"}, "th": {"align"}}


@lru_cache(maxsize=1)
def _markdown():
    import markdown  # imported on first use: passes with nothing to render never load it

    return markdown.Markdown(extensions=_EXTENSIONS, output_format="html")


@lru_cache(maxsize=1)
def _allow_lists() -> tuple[set[str], dict[str, set[str]]]:
    import nh3

    tags = set(nh3.ALLOWED_TAGS) - _FORBIDDEN_TAGS
    attributes = {tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()}
    for tag, extra in _EXTRA_ATTRIBUTES.items():
        attributes.setdefault(tag, set()).update(extra)
    return tags, attributes


def sanitize(html: str, base_url: str) -> str:
    """Remove scripts, frames, event handlers and unsafe URLs; make relative URLs absolute against base_url."""

    def absolutize(tag: str, attr: str, value: str) -> str | None:
        if attr in _URL_ATTRS:
            return urljoin(base_url, value.strip())
        return value

    import nh3

    tags, attributes = _allow_lists()
    return nh3.clean(
        xml_safe(html),
        tags=tags,
        attributes=attributes,
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


def excerpt_html(excerpt: str, given: bool, base_url: str) -> str:
    """A post's excerpt as HTML: the author's Markdown rendered and sanitized, a derived plain excerpt escaped."""
    from html import escape

    return inline_html(excerpt, base_url) if given else escape(excerpt, quote=False)
