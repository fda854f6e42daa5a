from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import CleanupConfig
from publisher.errors import PostError
from publisher.reading.posts import ReaderSettings, SourceFile, parse_date, read_post, reading_minutes, slugify

from .conftest import post_text

TOKYO = ZoneInfo("Asia/Tokyo")
SETTINGS = ReaderSettings("Asia/Tokyo", "https://news.example.jp/", "/{year}/{month}/{day}/{slug}/", CleanupConfig(),
                          check_body=True)


def read(tmp_path: Path, text: str | bytes, name: str = "post.md"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    st = path.stat()
    return read_post(SourceFile(name, str(path), st.st_size, st.st_mtime_ns), SETTINGS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-11-29 20:40:29 +0000", datetime(2025, 11, 29, 20, 40, 29, tzinfo=UTC)),
        ("2025-11-29T20:40:29Z", datetime(2025, 11, 29, 20, 40, 29, tzinfo=UTC)),
        ("2025-11-29T20:40:29+09:00", datetime(2025, 11, 29, 11, 40, 29, tzinfo=UTC)),
        ("2025-11-29 20:40 +0530", datetime(2025, 11, 29, 15, 10, tzinfo=UTC)),
        ("2025-11-29 20:40:29", datetime(2025, 11, 29, 20, 40, 29, tzinfo=TOKYO)),
        ("2025-11-29", datetime(2025, 11, 29, tzinfo=TOKYO)),
        (date(2025, 11, 29), datetime(2025, 11, 29, tzinfo=TOKYO)),
        (datetime(2025, 11, 29, 8, 0), datetime(2025, 11, 29, 8, 0, tzinfo=TOKYO)),
        (datetime(2025, 11, 29, 8, 0, tzinfo=UTC), datetime(2025, 11, 29, 8, 0, tzinfo=UTC)),
    ],
)
def test_parse_date_forms(value, expected):
    got = parse_date(value, TOKYO)
    assert got == expected and got.tzinfo is not None


@pytest.mark.parametrize("value", ["tomorrow", "2025-13-01", "29/11/2025", 20251129, "2025-11-29 25:00"])
def test_parse_date_rejects(value):
    with pytest.raises(ValueError):
        parse_date(value, TOKYO)


def test_yaml_date_forms_in_front_matter(tmp_path):
    # YAML turns the space-separated form into a string, the ISO form into a datetime, a bare date into a date.
    forms = {
        "2025-11-29 20:40:29 +0000": "2025-11-29T20:40:29+00:00",
        "2025-11-29T20:40:29+09:00": "2025-11-29T20:40:29+09:00",
        "2025-11-29 20:40:29": "2025-11-29T20:40:29+09:00",
        "2025-11-29": "2025-11-29T00:00:00+09:00",
    }
    for raw, expected in forms.items():
        assert read(tmp_path, post_text(date=raw)).date.isoformat() == expected


def test_post_fields(tmp_path):
    text = post_text(
        title="日本語のタイトル", categories='["投資分析", "半導体", "投資分析"]', tags="AI",
        author="編集部", excerpt='"**太字**の要約"', reading_time="3",
        body="本文です。",
    )
    post = read(tmp_path, text, "2025-01-01-my-post.txt")
    assert post.title == "日本語のタイトル"
    assert post.categories == ("投資分析", "半導体")
    assert post.tags == ("AI",)
    assert post.author == "編集部"
    assert post.excerpt == "**太字**の要約" and post.excerpt_given
    assert post.reading_time == 3
    assert post.slug == "2025-01-01-my-post"
    assert post.url == "https://news.example.jp/2026/01/01/2025-01-01-my-post/"
    assert not post.draft


def test_category_as_one_string_and_slug_override(tmp_path):
    post = read(tmp_path, post_text(categories="Research", slug="日本語 スラッグ"))
    assert post.categories == ("Research",)
    assert post.slug == "日本語-スラッグ"
    assert post.url.endswith("/%E6%97%A5%E6%9C%AC%E8%AA%9E-%E3%82%B9%E3%83%A9%E3%83%83%E3%82%B0/")


@pytest.mark.parametrize("flag", ["draft: true", "published: false"])
def test_drafts(tmp_path, flag):
    key, value = flag.split(": ")
    assert read(tmp_path, post_text(**{key: value})).draft


def test_reading_time_counts_japanese_by_characters():
    assert reading_minutes("あ" * 500) == 1
    assert reading_minutes("あ" * 2600) == 6
    assert reading_minutes("word " * 1100) == 5
    assert reading_minutes("") == 1


def test_reading_time_computed_when_absent_or_invalid(tmp_path):
    post = read(tmp_path, post_text(body="漢字" * 1000))
    assert post.reading_time == 4
    post = read(tmp_path, post_text(body="漢字" * 1000, reading_time='"8 min"'))
    assert post.reading_time == 4
    assert any("reading_time" in f.what for f in post.findings)


def test_excerpt_derived_from_body(tmp_path):
    post = read(tmp_path, post_text(body="First **paragraph** here.\n\nSecond one."))
    assert post.excerpt == "First paragraph here." and not post.excerpt_given


def test_slugify_keeps_japanese():
    assert slugify("投資 分析/2025") == "投資-分析-2025"
    assert slugify("  ") == "untitled"


BAD_POSTS = [
    ("empty.md", b"", 1, "the file is empty"),
    ("blank.md", b"\n  \n", 1, "the file is empty"),
    ("nofm.md", "ただの本文です。\n二行目。\n".encode(), 1, "no front matter"),
    ("latin1.md", post_text(body="caf\xe9").encode("latin-1"), 6, "not valid UTF-8"),
    ("yaml.md", b'---\ntitle: "ok"\ndate: 2025-01-01\ntags: [a, b\n---\nbody\n', 5, "not valid YAML"),
    ("notitle.md", b"---\ndate: 2025-01-01\n---\nbody\n", 1, "no title"),
    ("emptytitle.md", b'---\ndate: 2025-01-01\ntitle: ""\n---\nbody\n', 3, "no title"),
    ("nodate.md", b'---\ntitle: "x"\n---\nbody\n', 1, "no date"),
    ("baddate.md", b'---\ntitle: "x"\nauthor: a\ndate: next tuesday\n---\nbody\n', 4, "the date 'next tuesday' is not a date"),
    ("list.md", b"---\n- a\n- b\n---\nbody\n", 1, "front matter is not a set"),
    ("dicttitle.md", b'---\ntitle: {a: 1}\ndate: 2025-01-01\n---\nbody\n', 2, "the title is a dict"),
    ("nested.md", b'---\ntitle: "x"\ndate: 2025-01-01\ncategories: [[a]]\n---\nbody\n', 4, "nested"),
]


@pytest.mark.parametrize(("name", "raw", "line", "what"), BAD_POSTS, ids=[b[0] for b in BAD_POSTS])
def test_bad_posts_name_file_and_line(tmp_path, name, raw, line, what):
    with pytest.raises(PostError) as info:
        read(tmp_path, raw, name)
    finding = info.value.finding
    assert finding.path == str(tmp_path / name)
    assert finding.line == line
    assert what in finding.what
    assert finding.fix, "every error says how to fix it"
    assert str(finding).startswith(f"{tmp_path / name}:{line}: error: ")


def test_no_front_matter_suggests_a_block(tmp_path):
    with pytest.raises(PostError) as info:
        read(tmp_path, "random tag line\n\n## 新しいAIチップの発表について\n\n本文。\n")
    assert 'title: "新しいAIチップの発表について"' in info.value.finding.detail
    assert info.value.finding.detail.startswith("---\n")


def test_windows_line_endings_and_bom(tmp_path):
    raw = "\ufeff---\r\ntitle: \"CRLF\"\r\ndate: 2025-01-01\r\n---\r\nBody.\r\n".encode()
    post = read(tmp_path, raw)
    assert post.title == "CRLF" and post.date.date() == date(2025, 1, 1)


def test_content_hash_changes_with_content(tmp_path):
    a = read(tmp_path, post_text(body="one"))
    b = read(tmp_path, post_text(body="two"))
    assert a.content_hash != b.content_hash
    assert a.date - b.date == timedelta(0)
