"""Clean-ups of automated-writing artifacts: each one alone, switched off, and on the real sample posts."""

from __future__ import annotations

import dataclasses
import re

import pytest

from publisher.config import CleanupConfig
from publisher.reading.cleanup import clean_body, guess_title

from .conftest import SAMPLE_POSTS

ON = CleanupConfig()


def clean(body: str, title: str = "The title", cfg: CleanupConfig = ON, first_line: int = 5):
    return clean_body(body, title, cfg, "post.md", first_line)


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


A = "First paragraph says something long enough to count as a block."
B = "Second paragraph is different and also long enough to matter here."
C = "Third paragraph closes the post with a full sentence."


def test_marker_lines_removed_and_reported():
    result = clean(f"{A}\n\n---END---\n\n{B}\n\n--- END ---\n")
    assert paragraphs(result.text) == [A, B]
    lines = [(f.line, f.severity) for f in result.findings if "marker" in f.what]
    assert lines == [(7, "info"), (11, "info")]


def test_custom_marker_pattern_and_switch():
    cfg = dataclasses.replace(ON, marker_patterns=(r"^\[\[STOP\]\]$",))
    assert paragraphs(clean(f"{A}\n\n[[STOP]]\n\n---END---", cfg=cfg).text) == [A, "---END---"]
    off = dataclasses.replace(ON, markers=False, truncation=False)
    assert "---END---" in clean(f"{A}\n\n---END---", cfg=off).text


def test_marker_inside_code_block_is_content():
    body = f"{A}\n\n```\n---END---\n```\n"
    assert "---END---" in clean(body).text


@pytest.mark.parametrize("first", ["The title", "# The title", "**The title**", "  THE TITLE  ", "The　title"])
def test_first_line_repeating_title_removed(first):
    result = clean(f"{first}\n\n{A}")
    assert paragraphs(result.text) == [A]
    finding = next(f for f in result.findings if "repeats the title" in f.what)
    assert finding.line == 5


def test_title_line_kept_when_different_or_switched_off():
    assert paragraphs(clean(f"The title, and more\n\n{A}").text)[0] == "The title, and more"
    off = dataclasses.replace(ON, title_repeat=False)
    assert paragraphs(clean(f"The title\n\n{A}", cfg=off).text) == ["The title", A]


def test_title_line_in_same_paragraph_keeps_rest():
    assert paragraphs(clean(f"The title\n{A}").text) == [A]


def test_repeated_run_kept_once_in_order():
    body = "\n\n".join([A, B, C, A, B, "A new paragraph that is not repeated anywhere else.", C + " Extra."])
    result = clean(body)
    assert paragraphs(result.text) == [A, B, C, "A new paragraph that is not repeated anywhere else.", "Extra."]
    found = [f for f in result.findings if "paragraph(s)" in f.what]
    assert len(found) == 1 and found[0].severity == "warning"
    assert found[0].line == 5 + 6  # the first repeated paragraph starts on the file's line 11
    assert (found[0].end_line, found[0].repeat_of) == (5 + 8, 5) and found[0].preview.startswith("First paragraph")
    sentence = [f for f in result.findings if "repeated sentence" in f.what]
    assert [(f.line, f.repeat_of) for f in sentence] == [(5 + 12, 5 + 4)]
    off = dataclasses.replace(ON, repeated_sentences=False)
    assert paragraphs(clean(body, cfg=off).text)[-1] == C + " Extra."


def test_post_made_only_of_repeats_keeps_one_copy():
    block = f"{A}\n\n{B}"
    result = clean("\n\n".join([block, block, block]))
    assert paragraphs(result.text) == [A, B]


def test_paragraphs_sharing_a_sentence_keep_it_in_the_first():
    shared = "This exact sentence appears in both paragraphs."
    one, two = f"{shared} Then the first goes on.", f"Before it, the second starts. {shared}"
    assert paragraphs(clean(f"{one}\n\n{two}").text) == [one, "Before it, the second starts."]
    off = dataclasses.replace(ON, repeated_sentences=False)
    assert paragraphs(clean(f"{one}\n\n{two}", cfg=off).text) == [one, two]


def test_short_repeated_heading_kept():
    body = f"**Summary**\n\n{A}\n\n**Summary**\n\n{B}"
    assert paragraphs(clean(body).text) == ["**Summary**", A, "**Summary**", B]


def test_repeated_code_blocks_kept():
    code = "```\nprint('same code in two places')\n```"
    assert clean(f"{code}\n\n{A}\n\n{code}\n\n{B}").text.count("print(") == 2


def test_repeats_switch():
    off = dataclasses.replace(ON, repeated_blocks=False, repeated_sentences=False)
    assert paragraphs(clean(f"{A}\n\n{A}", cfg=off).text) == [A, A]
    blocks_only = dataclasses.replace(ON, repeated_sentences=False)
    assert paragraphs(clean(f"{A}\n\n{A}", cfg=blocks_only).text) == [A]
    sentences_only = dataclasses.replace(ON, repeated_blocks=False)
    result = clean(f"{A}\n\n{A}", cfg=sentences_only)
    assert paragraphs(result.text) == [A] and "repeated sentence" in result.findings[0].what


@pytest.mark.parametrize("ending", ["ends here.", "終わりです。", "本当？", "すごい！", "「引用」", "（注）", "Really?!", "done 🎉"])
def test_closed_endings_not_flagged(ending):
    assert not [f for f in clean(f"{A}\n\nIt {ending}").findings if "mid-sentence" in f.what]


@pytest.mark.parametrize("ending", ["Google Cloud:GeminiモデルとVertex AIで、企業", "and then the", "理由は"])
def test_cut_off_body_flagged(ending):
    result = clean(f"{A}\n\n{ending}\n")
    found = [f for f in result.findings if "mid-sentence" in f.what]
    assert len(found) == 1 and found[0].severity == "warning" and found[0].line == 7
    assert ending in result.text, "flagged, not removed"


def test_truncation_ignores_code_and_tables_and_switch():
    assert not [f for f in clean(f"{A}\n\n```\nx = 1\n```").findings if "mid-sentence" in f.what]
    assert not [f for f in clean(f"{A}\n\n| a | b |").findings if "mid-sentence" in f.what]
    off = dataclasses.replace(ON, truncation=False)
    assert not clean("cut off in the", cfg=off).findings


def test_invisible_characters_removed_width_forms_kept():
    body = "Zero\u200bwidth\ufeff and\x07 bell. 全角ＡＢＣ１２３と半角ｶﾀｶﾅはそのまま。Emoji 👩\u200d💻 stays."
    result = clean(body)
    assert result.text.strip() == "Zerowidth and bell. 全角ＡＢＣ１２３と半角ｶﾀｶﾅはそのまま。Emoji 👩\u200d💻 stays."
    found = [f for f in result.findings if "invisible" in f.what]
    assert found and "3 invisible" in found[0].what
    off = dataclasses.replace(ON, invisible_chars=False)
    assert "\u200b" in clean(body, cfg=off).text


def test_guess_title():
    assert guess_title("noise\n\n## 見出しのタイトル\n本文") == "見出しのタイトル"
    assert guess_title("ai\n\n2,000 + Buzz\n\nオープンAIとアマゾンが大型契約を結ぶ\n\n本文です。") == "オープンAIとアマゾンが大型契約を結ぶ"
    assert guess_title("Just English text here\n") == "Just English text here"


def test_markdown_raw_html_and_excerpt_are_sanitized(empty_site):
    from .conftest import FIXED_NOW, post_text

    body = "Safe <b>bold</b>.\n\n<div onmouseover=\"x()\">hover</div>\n\n<script>evil()</script>\n\nEnd."
    empty_site.write_post("raw.md", post_text(body=body, excerpt="'<img src=x onerror=alert(1)> **ok**'"))
    empty_site.run("--now", FIXED_NOW)
    atom = (empty_site.feeds / "all.atom.xml").read_text(encoding="utf-8")
    assert "&lt;b&gt;bold&lt;/b&gt;" in atom
    for bad in ("onmouseover", "onerror", "evil()", "script"):
        assert bad not in atom


def _sample_bodies():
    for path in sorted(SAMPLE_POSTS.glob("*")) if SAMPLE_POSTS.is_dir() else []:
        text = path.read_text(encoding="utf-8")
        if text.startswith("---"):
            _, fm, body = text.split("---", 2)
            title = re.search(r'^title:\s*"?(.*?)"?\s*$', fm, re.M).group(1)
            yield path.name, title, body


@pytest.mark.skipif(not SAMPLE_POSTS.is_dir(), reason="../shared/sample-posts is not beside the repo")
@pytest.mark.parametrize(("name", "title", "body"), list(_sample_bodies()))
def test_sample_posts_lose_only_artifacts(name, title, body):
    result = clean(body, title)
    before = paragraphs(body)
    markers = [p for p in before if re.fullmatch(r"-{3,}\s*END\s*-{3,}", p)]
    title_lines = 1 if before and before[0].split("\n")[0].strip() == title.strip() else 0
    after = paragraphs(result.text)
    assert "---END---" not in result.text
    assert len(after) == len(set(after)), "no paragraph appears twice"
    assert len(after) == len(before) - len(markers) - title_lines, "nothing but markers and the title line removed"
