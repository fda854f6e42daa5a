"""Lists of the feeds for readers and for the site: OPML subscription lists and HTML discovery links."""

from __future__ import annotations

from ..config import Config
from ..text import xml_safe
from .build import FORMAT_NAMES, MEDIA_TYPES, FeedPlan

INDEX_NAME = "index.opml"
DISCOVERY_NAME = "discovery.html"
OPML_VERSIONS = {"rss": "RSS2"}  # the W3C validator knows RSS, RSS1, RSS2 and scriptingNews; Atom gets none


def index_name(fmt: str, cfg: Config) -> str:
    """`index.opml` for the first format in [feeds] opml, `index-<format>.opml` for the others."""
    return INDEX_NAME if fmt == cfg.feeds.opml[0] else f"index-{fmt}.opml"


def all_index_names() -> set[str]:
    """Every name an index may have had, so one no longer wanted can be removed."""
    return {INDEX_NAME} | {f"index-{fmt}.opml" for fmt in FORMAT_NAMES}


def build_indexes(plans: list[FeedPlan], cfg: Config) -> dict[str, tuple[bytes, int]]:
    """Every list the configuration asks for, with how many feeds it lists: one OPML per format in
    [feeds] opml, and the discovery links."""
    listed = [p for p in plans if not p.moved_to]
    out = {}
    for fmt in cfg.feeds.opml:
        of_format = [p for p in listed if p.fmt == fmt]
        out[index_name(fmt, cfg)] = (build_opml(of_format, cfg, fmt), len(of_format))
    out[DISCOVERY_NAME] = (build_discovery(listed, cfg), len(listed))
    return out


def build_opml(plans: list[FeedPlan], cfg: Config, fmt: str) -> bytes:
    """OPML 2.0 with one outline per feed (moved feeds left out), in the plans' order: a list a reader imports
    without getting each entry twice. `type="rss"` is OPML's word for any feed; `version` only where the W3C
    validator has a value for the format."""
    from xml.etree import ElementTree as ET

    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = xml_safe(f"{cfg.site.title} — {FORMAT_NAMES[fmt]}")
    body = ET.SubElement(opml, "body")
    for plan in plans:
        if plan.moved_to:
            continue
        attrs = {"type": "rss", "text": xml_safe(plan.title), "title": xml_safe(plan.title),
                 "description": xml_safe(plan.description), "xmlUrl": plan.url, "htmlUrl": cfg.site.base_url}
        if fmt in OPML_VERSIONS:
            attrs["version"] = OPML_VERSIONS[fmt]
        ET.SubElement(body, "outline", attrs)
    ET.indent(opml)
    return ET.tostring(opml, encoding="UTF-8", xml_declaration=True) + b"\n"


def build_discovery(plans: list[FeedPlan], cfg: Config) -> bytes:
    """`<link rel="alternate">` tags for every feed, for the <head> of the site's HTML templates."""
    from html import escape

    lines = ["<!-- Feed discovery links written by publisher: include them in the <head> of your pages "
             "(the site-wide ones everywhere, a category's on its pages). -->"]
    for plan in plans:
        if plan.moved_to:
            continue
        title = escape(xml_safe(f"{plan.title} ({FORMAT_NAMES[plan.fmt]})"))
        lines.append(f'<link rel="alternate" type="{MEDIA_TYPES[plan.fmt]}" title="{title}" '
                     f'href="{escape(plan.url)}">')
    return ("\n".join(lines) + "\n").encode("utf-8")
