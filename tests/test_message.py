"""Outgoing messages: the shared-skeleton fast path equals a full email-package build."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from publisher.message import PREFERENCES_MARK, UNSUBSCRIBE_MARK, Outgoing, Skeleton, _base64_text, list_headers

HTML = f"<p>データセンター &amp; <a href=\"{UNSUBSCRIBE_MARK}\">配信停止</a></p>\n" * 300
TEXT = f"テキスト {UNSUBSCRIBE_MARK} {PREFERENCES_MARK}\n" * 300


def outgoing(i: int, name: str = "読者 太郎", skeleton: Skeleton | None = None) -> Outgoing:
    url = f"https://news.example.jp/unsubscribe/tok{i}?a=1&b=2"
    return Outgoing(
        i, f"r{i}@example.com", name, "AI速報ラボ <digest@news.example.jp>", "週刊ダイジェスト 03/09〜03/16",
        None, None, f"<{i}.x@news.example.jp>",
        headers=list_headers("digest.news.example.jp", "AI速報ラボ", url, datetime(2026, 3, 16, tzinfo=UTC),
                             "editor@news.example.jp"),
        template=(HTML, TEXT), links={UNSUBSCRIBE_MARK: url, PREFERENCES_MARK: f"https://p/{i}"},
        skeleton=skeleton)


@pytest.mark.parametrize("name", ["読者 太郎", "", "Plain Name", 'Quote "Me", Inc.', "とても長い名前" * 12])
def test_skeleton_equals_full_build(name):
    skeleton = Skeleton(outgoing(0))
    fast = message_from_bytes(outgoing(7, name, skeleton).as_bytes(), policy=policy.default)
    full = message_from_bytes(outgoing(7, name).as_bytes(), policy=policy.default)
    assert sorted(fast.keys()) == sorted(full.keys())
    for key in full.keys():
        if key != "Content-Type":  # the boundary differs
            assert str(fast[key]) == str(full[key]), key
    if len(name) < 30:  # very long names come back split into words by the parser, in both builds alike
        assert fast["To"].addresses[0].display_name == name.strip()
    for kind in ("plain", "html"):
        assert fast.get_body((kind,)).get_content() == full.get_body((kind,)).get_content()
    html = fast.get_body(("html",)).get_content()
    assert "tok7?a=1&amp;b=2" in html and UNSUBSCRIBE_MARK not in html, "links filled, escaped in HTML"
    assert "https://p/7" in fast.get_body(("plain",)).get_content()


def test_skeleton_lines_are_short_and_crlf():
    raw = outgoing(3, skeleton=Skeleton(outgoing(0))).as_bytes()
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 200 for line in header_block.split(b"\r\n"))


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 114, 1000, 30000])
def test_base64_matches_the_standard_encoder(size):
    text = "あ" * size
    data = b"\r\n".join(text.encode().splitlines()) + b"\r\n"
    assert _base64_text(text) == base64.encodebytes(data).replace(b"\n", b"\r\n")


def test_newline_in_name_or_header_value_never_splits_headers():
    message = outgoing(1, name="Evil\r\nBcc: victim@example.com")
    message.headers["List-ID"] = "x\r\nBcc: victim@example.com <l.example>"
    for raw in (message.as_bytes(), outgoing(1, "Evil\nBcc: v@example.com", Skeleton(outgoing(0))).as_bytes()):
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Bcc"] is None


def test_too_large():
    small = outgoing(1)
    assert not small.too_large()
    big = Outgoing(1, "a@example.com", "", "a <b@example.com>", "s", "あ" * 60000, "t", "<x@y>")
    assert big.too_large()
