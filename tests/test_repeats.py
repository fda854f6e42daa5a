"""Sentence-level repeats: posts built from the patterns a writing pipeline leaves, counted sentence by sentence.

Every post here is written for these tests: a list of paragraphs of known sentences, then the copies the
pipeline makes (a paragraph re-glued with the title, a paragraph with one word changed and its bold
removed, a paragraph split mid-sentence, a sentence repeated across a paragraph boundary), mixed with
text that legitimately repeats (short sign-offs, a repeated heading). The checks count sentences in the
output: each original sentence exactly once, no run of three sentences twice.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.config import CleanupConfig
from publisher.reading.cleanup import clean_body
from publisher.reading.repeats import sentence_key, split_sentences

from .conftest import SAMPLE_POSTS

ON = CleanupConfig()
OFF = dataclasses.replace(ON, repeated_sentences=False)

JA_TITLE = "地方のパン屋チェーンがAIで売れ残りを減らした話"
JA = [
    ["地方のパン屋チェーンが、需要予測のAIを全店に導入した。", "導入の目的は、夕方に売れ残るパンを減らすことだった。",
     "最初の三か月は、予測が外れる日も多かったという。"],
    ["店長たちは当初、画面に出る数字をあまり信用していなかった。", "長年の勘のほうが正確だと考える人が多かったからだ。",
     "ところが、雨の日の来客数を言い当てたことで空気が変わった。"],
    ["予測モデルは、**天気と曜日と近所の行事**を入力に使う。", "さらに、前の年の同じ日の販売記録も参考にしている。",
     "小学校の運動会がある週末には、サンドイッチの予測が二倍近くに跳ね上がる。"],
    ["焼く量を決めるのは、今も人間の仕事だ。", "AIが出すのはあくまで目安で、最後は店長が窯の前で判断する。",
     "この役割分担が、現場の反発を和らげたと本部の担当者は話す。"],
    ["導入から一年で、廃棄されるパンは三割ほど減った。", "浮いた原材料費は、新しいオーブンの購入に回されたそうだ。"],
    ["一方で、予測が難しい商品もある。", "季節限定の菓子パンは過去の記録が少なく、モデルが学ぶ材料が足りない。",
     "こうした商品は、発売から二週間は店長の判断だけで数を決めている。"],
    ["パートの従業員からは、仕込みの段取りが立てやすくなったという声が聞かれた。",
     "前日の夜に翌日の予測が届くので、朝の作業の順番を前もって決められるからだ。"],
    ["本部は次に、配送トラックの積み込み順にも予測を使うつもりだ。", "店ごとの到着時刻を揃えれば、焼きたてを並べる時間も読めるようになる。",
     "ただし、道路の混み具合まで読むのは簡単ではない。"],
    ["小さな会社でもここまでできる、というのが今回いちばんの驚きだった。", "必要だったのは高価な設備ではなく、毎日の記録を欠かさずつけることだった。"],
    ["取材の最後に、ある店長が窯の温度計を指さして笑った。", "結局いちばん大事なのは、この数字を毎朝見ることなんですよ。"],
]
JA_VARIANT = ("さらに、前の年の同じ日の販売記録も参考にしている。", "そして、前の年の同じ日の販売記録も参考にしている。")
JA_SHORT = "以上です。"
JA_END = "次回は、配送トラックの話を書く予定だ。"
JA_HEADING = "**現場の声**"

EN_TITLE = "How a small library taught its chatbot to say I do not know"
EN = [
    ["The city library added a chatbot to its website last spring.", "Most questions were about opening hours and late fees.",
     "Nobody expected it to become the busiest desk in the building."],
    ["The first version answered everything, even when it had no idea.", "It once told a patron that the library rented out kayaks.",
     "The staff laughed, and then they turned the bot off for a week."],
    ["The second version only answers from the catalogue and the **posted rules**.",
     "Moreover, it hands the question to a librarian when it cannot find a source.",
     "Patrons see a short note saying a person will reply within a day."],
    ["Dr. Alvarez, who runs the reference desk, reads every handover.", "About one in ten turns out to be a question the rules never covered.",
     "Those questions now go into a shared list that grows by 3.5 items a week on average."],
    ["Late fees were abolished in March, which the bot had to learn on the first day.",
     "For a while it kept quoting the old rate of 25 cents per day."],
    ["Children use the bot differently from adults.", "They ask it for book recommendations in long, winding sentences.",
     "The bot answers with three titles and a question about what they liked last."],
    ["The library measured how long patrons waited for an answer.", "Before the bot, an email took two days to get a reply.",
     "Now most questions are answered at once, and the rest within a day."],
    ["Not everyone is convinced that a chatbot belongs in a public library.",
     "Some patrons worry that their questions are stored somewhere they cannot see.",
     "The library now deletes conversations after thirty days and says so on the page."],
    ["The budget for the project was smaller than the yearly cost of the old phone line.",
     "Most of the money went into writing down rules that had only ever lived in people's heads."],
    ["Next year the library wants the bot to handle room bookings as well.", "The meeting rooms are booked by phone today, and the line is often busy."],
]
EN_VARIANT = ("Moreover, it hands the question to a librarian when it cannot find a source.",
              "Also, it hands the question to a librarian when it cannot find a source.")
EN_SHORT = "Thanks for reading."
EN_END = "Next time: what the bot learned from the room bookings."
EN_HEADING = "## Notes from the desk"


def clean(body: str, title: str, cfg: CleanupConfig = ON):
    return clean_body(body, title, cfg, "post.md", 5)


def para(sentences: list[str], sep: str) -> str:
    return sep.join(sentences)


def wrap(text: str, width: int = 64) -> str:
    """Hard-wrap English prose the way hand-written Markdown often is."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def flat(text: str, cjk: bool) -> str:
    """Text as the counts see it: no emphasis markers, whitespace collapsed (removed for Japanese)."""
    text = text.replace("**", "")
    return re.sub(r"\s+", "" if cjk else " ", text)


def count(haystack: str, sentence: str, cjk: bool) -> int:
    return flat(haystack, cjk).count(flat(sentence, cjk))


def sentence_list(text: str, cjk: bool) -> list[str]:
    """The output's sentences by a splitter independent of the one under test."""
    body = flat(re.sub(r"^#+ |^\d+\. ", "", text, flags=re.M), cjk)
    pattern = r"[^。！？]+[。！？]" if cjk else r"[^.!?]+?[.!?](?=\s|$)"
    return [s.strip() for s in re.findall(pattern, body) if s.strip()]


def repeated_triples(sentences: list[str]) -> list[tuple[str, ...]]:
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(sentences) - 2):
        triple = tuple(sentences[i:i + 3])
        seen[triple] = seen.get(triple, 0) + 1
    return [t for t, n in seen.items() if n > 1]


def build(paragraphs: list[list[str]], title: str, sep: str, variant: tuple[str, str], short: str, heading: str,
          wrapped: bool, end: str) -> str:
    """A post with every pattern: the original text first, then the copies, with legitimate repeats around."""
    text = [para(p, sep) for p in paragraphs]
    shown = [wrap(t) if wrapped else t for t in text]
    blocks = [title, *shown[:3], heading, shown[3] + sep + short, *shown[4:7], heading, *shown[7:]]
    # A sentence repeated across a paragraph boundary: the last of paragraph 5 opens the next one again.
    blocks[blocks.index(shown[6])] = (wrap if wrapped else str)(para([paragraphs[5][-1], *paragraphs[6]], sep))
    # A paragraph repeated with one word changed and its bold removed.
    changed = text[2].replace(variant[0], variant[1]).replace("**", "")
    # A paragraph repeated after being split mid-sentence into two paragraphs.
    whole = text[3]
    middle = whole.index(paragraphs[3][1]) + len(paragraphs[3][1]) // 2
    split = [whole[:middle].rstrip(), whole[middle:].lstrip()]
    # The title and the first paragraphs glued into one long paragraph, cut off mid-sentence.
    glued = " ".join([title, *text[:3], heading.strip("*# "), *text[3:8]])
    cut_at = glued.rindex(paragraphs[7][-1]) + len(paragraphs[7][-1]) // 2
    glued = glued[:cut_at]
    closing = para([end, short], sep)
    return "\n\n".join([*blocks, changed, *split, glued, closing]) + "\n"


CASES = {
    "ja": (JA, JA_TITLE, "", JA_VARIANT, JA_SHORT, JA_HEADING, False, JA_END),
    "en": (EN, EN_TITLE, " ", EN_VARIANT, EN_SHORT, EN_HEADING, False, EN_END),
    "en-wrapped": (EN, EN_TITLE, " ", EN_VARIANT, EN_SHORT, EN_HEADING, True, EN_END),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_sentence_once_and_legitimate_repeats_kept(case):
    paragraphs, title, sep, variant, short, heading, wrapped, end = CASES[case]
    cjk = case == "ja"
    body = build(*CASES[case])
    before = clean(body, title, OFF).text
    out = clean(body, title).text
    sentences = [s for p in paragraphs for s in p] + [end]
    assert len(set(sentences)) == len(sentences)
    # The source really repeats itself: most sentences appear more than once before the clean-up.
    assert sum(count(before, s, cjk) > 1 for s in sentences) >= 20
    assert repeated_triples(sentence_list(before, cjk))
    # After it: each sentence exactly once, the changed copy gone, no run of three sentences twice.
    assert {s: count(out, s, cjk) for s in sentences} == dict.fromkeys(sentences, 1)
    assert count(out, variant[1], cjk) == 0
    assert repeated_triples(sentence_list(out, cjk)) == []
    # Legitimate repeats stay: the short sign-off in two places and the repeated heading.
    assert count(out, short, cjk) == 2
    assert out.count(heading) == 2
    assert "**" in out and out.count("**") % 2 == 0


@pytest.mark.parametrize("case", list(CASES))
def test_first_copies_stay_in_place(case):
    """The cleaned post is the original text: the first copies, in their order, and nothing else but the
    sign-off and headings."""
    paragraphs, title = CASES[case][:2]
    cjk = case == "ja"
    out = clean(build(*CASES[case]), title).text
    order = [flat(out, cjk).index(flat(s, cjk)) for p in paragraphs for s in p]
    assert order == sorted(order)
    assert flat(out, cjk).startswith(flat(paragraphs[0][0], cjk))


def test_findings_name_lines_first_copy_and_preview():
    body = build(*CASES["ja"])
    result = clean(body, JA_TITLE)
    lines = body.split("\n")
    found = [f for f in result.findings if "repeated sentence" in f.what]
    assert found and all(f.severity == "warning" for f in found)
    for f in found:
        assert f.end_line >= f.line and f.repeat_of < f.line
        copy = flat(lines[f.line - 5], True)
        assert flat(f.preview.rstrip("…"), True)[:10] in copy
        assert f.preview in f.what and re.search(rf"first written on lines? {f.repeat_of}\b", f.what)
    # The glued paragraph is one finding that points back to the removed title line (the body's first line).
    glued = next(f for f in found if f.preview.startswith(JA_TITLE[:10]))
    assert glued.repeat_of == 5
    # The sentence repeated across a paragraph boundary points at its first copy's line.
    boundary = next(f for f in found if JA[5][-1][:10] in f.preview)
    assert boundary.repeat_of == next(i for i, line in enumerate(lines, start=5) if JA[5][-1] in line)


def test_switch_off_keeps_everything():
    body = build(*CASES["ja"])
    assert not [f for f in clean(body, JA_TITLE, OFF).findings if "repeated sentence" in f.what]
    assert count(clean(body, JA_TITLE, OFF).text, JA[2][1], True) == 2


def test_near_copies_are_exact_only_when_ratio_is_zero():
    body = build(*CASES["ja"])
    exact = dataclasses.replace(ON, sentence_near_ratio=0.0)
    assert count(clean(body, JA_TITLE, exact).text, JA_VARIANT[1], True) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("Thanks for reading.\n\nA long and unrelated paragraph sits between the two.\n\nThanks for reading.", 2),
    ("以上です。\n\n全く関係のない長めの段落がここに一つ入っています。\n\n以上です。", 2),
    ("Short one. Another long sentence that is unique in this post.\n\nShort one.", 2),
])
def test_short_repeats_alone_are_kept(text, expected):
    out = clean(text, "t").text
    first = text.split("\n")[0].split(". ")[0].split("。")[0]
    assert out.count(first) == expected


def test_a_long_sentence_repeated_alone_is_cut_and_reported():
    s = "The upgrade takes about twenty minutes and needs no downtime."
    body = f"Intro paragraph with its own words.\n\nFirst: {s} Then we rest.\n\nLater on. {s}\n"
    result = clean(body, "t")
    assert result.text.count(s) == 1 and "Later on." in result.text and "Then we rest." in result.text
    f = next(f for f in result.findings if "repeated" in f.what)
    assert (f.line, f.end_line, f.repeat_of) == (9, 9, 7)


def test_near_copy_alone_is_a_different_sentence():
    """One word changed and no copied neighbours: the two sentences say different things, both stay."""
    a = "We recommend the managed plan for most teams that run fewer than ten services."
    b = "We recommend the hosted plan for most teams that run fewer than ten services."
    out = clean(f"{a}\n\nSomething else entirely, written once.\n\n{b}\n", "t").text
    assert a in out and b in out


def test_numbers_differ_means_different_sentences():
    a = "Revenue grew 12 percent in the third quarter, helped by cloud demand."
    b = "Revenue grew 15 percent in the third quarter, helped by cloud demand."
    ctx = "The company also said hiring would slow next year in every region."
    out = clean(f"{a} {ctx}\n\n{b} {ctx}\n", "t").text
    assert a in out and b in out and out.count(ctx) == 1


@pytest.mark.parametrize("block", [
    "```\nprint('the same line of code in two places, long enough')\n```",
    "    indented code that repeats itself and is long enough to count",
    "- a list item that repeats itself and is long enough to count.",
    "> a quoted sentence that repeats itself and is long enough to count.",
    "| a table row that repeats itself | and is long enough to count. |\n|---|---|",
    "# A heading that repeats itself and is long enough to count",
])
def test_structure_is_never_cut(block):
    body = f"{block}\n\nA paragraph in between that is unique.\n\n{block}\n"
    cfg = dataclasses.replace(ON, repeated_blocks=False)
    out = clean(body, "t", cfg).text
    assert out.count(block) == 2


def test_prose_repeating_a_list_item_is_cut_but_the_list_stays():
    item = "The backup runs every night at two and keeps thirty days of copies."
    body = f"- {item}\n- Another item.\n\nAs noted above. {item}\n"
    out = clean(body, "t").text
    assert out.count(item) == 1 and out.startswith(f"- {item}") and "As noted above." in out


def test_cut_inside_bold_keeps_markers_balanced():
    s1 = "This first bold sentence is the one that gets repeated later."
    s2 = "The second bold sentence is new."
    out = clean(f"{s1}\n\n**{s1} {s2}**\n", "t").text
    assert f"**{s2}**" in out and out.count(s1) == 1
    out = clean(f"{s2}\n\n**{s1} {s2}**\n", "t", dataclasses.replace(ON, sentence_min_chars=5)).text
    assert f"**{s1}**" in out


@pytest.mark.parametrize(("text", "sentences"), [
    ("Dr. Smith arrived at 3.5 p.m. sharp. Then he left.", ["Dr. Smith arrived at 3.5 p.m. sharp.", "Then he left."]),
    ("See https://example.com/a.b?c=d. Next one!", ["See https://example.com/a.b?c=d.", "Next one!"]),
    ("He said \"stop.\" Then silence... and more. Done?! Yes.",
     ["He said \"stop.\"", "Then silence... and more.", "Done?!", "Yes."]),
    ("本当ですか？　はい。「そうです。」と彼は言った。（注）終わり", ["本当ですか？", "はい。", "「そうです。」", "と彼は言った。", "（注）終わり"]),
    ("Use `a. B` here. Then [a link](http://x.y/z.w?a=b!c) too.",
     ["Use `a. B` here.", "Then [a link](http://x.y/z.w?a=b!c) too."]),
    ("The U.S. economy grew. For example, this one. Fig. 3 shows it. J. Smith agreed. **Dr. Lee** won.",
     ["The U.S. economy grew.", "For example, this one.", "Fig. 3 shows it.", "J. Smith agreed.", "**Dr. Lee** won."]),
    ("It ended last spring. iPhone sales rose; see p. 4, etc. and more.",
     ["It ended last spring.", "iPhone sales rose; see p. 4, etc. and more."]),
    ("Line one wraps\nhere. 二行目は\n改行で終わる\n- bullet", ["Line one wraps\nhere.", "二行目は", "改行で終わる", "- bullet"]),
])
def test_sentence_splitter(text, sentences):
    assert [text[s:e] for s, e, _ in split_sentences(text)] == sentences


def _japanese_megabyte() -> tuple[str, str]:
    """~1 MB of Japanese prose made of distinct sentences, with the copy patterns sprinkled through."""
    words = [w for p in JA for s in p for w in re.findall(r"[^、。]+", s)]
    paragraphs: list[str] = []
    i = size = 0
    while size < 1_050_000:
        sentences = [f"{words[(i + k) % len(words)]}、第{i + k}回の記録では{words[(i * 7 + k) % len(words)]}。"
                     for k in range(4)]
        paragraphs.append("".join(sentences))
        size += len(paragraphs[-1].encode()) + 2
        i += 4
        if i % 200 == 0:
            paragraphs.append(paragraphs[-30] + paragraphs[-29])  # a re-glued copy
    return JA_TITLE, "\n\n".join(paragraphs)


def test_one_megabyte_post_is_fast():
    title, body = _japanese_megabyte()
    assert len(body.encode()) >= 1_000_000
    start = time.perf_counter()
    result = clean(body, title)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"{elapsed:.1f} s"  # about 1 s on the development machine; generous for a loaded one
    assert sum("repeated sentence" in f.what for f in result.findings) >= 10


def _sample_bodies():
    for path in sorted(SAMPLE_POSTS.glob("*")) if SAMPLE_POSTS.is_dir() else []:
        text = path.read_text(encoding="utf-8")
        m = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
        if m:
            title = re.search(r'^title:\s*"?(.*?)"?\s*$', m.group(1), re.M).group(1)
            yield path.name, title, m.group(2)
        else:
            yield path.name, "", text


@pytest.mark.skipif(not SAMPLE_POSTS.is_dir(), reason="the shared sample posts are not beside the repo")
@pytest.mark.parametrize(("name", "title", "body"), list(_sample_bodies()))
def test_sample_posts_no_triple_repeats_and_nothing_unique_lost(name, title, body):
    before = clean(body, title, OFF).text
    out = clean(body, title).text
    cjk = bool(re.search("[ぁ-んァ-ン]", body))
    source, after = sentence_list(before, cjk), sentence_list(out, cjk)
    assert repeated_triples(after) == []
    once = [s for s in source if source.count(s) == 1]
    assert [s for s in once if after.count(s) != 1] == []
    assert len(after) <= len(source)


def _site_post(title: str, body: str, date: str = "2026-03-12 19:00:00 +0900") -> str:
    return (f'---\ntitle: "{title}"\ndate: {date}\ncategories: ["Research"]\n---\n\n{body}')


def test_check_reports_each_removal_in_text_and_json(empty_site):
    body = build(*CASES["ja"])
    path = empty_site.write_post("copies.md", _site_post(JA_TITLE, body))
    offset = 7  # the body starts on the file's 7th line
    text = empty_site.run("check")
    assert text.exit_code == 0, text.output
    lines = [line for line in text.output.splitlines() if "repeated sentence" in line]
    assert len(lines) == 3 and all(line.startswith(f"{path}:") and ": warning: " in line for line in lines)
    data = json.loads(empty_site.run("check", "--format", "json").output)
    found = [f for f in data["findings"] if "repeated sentence" in f["what"]]
    assert [f"{f['path']}:{f['line']}: {f['severity']}: {f['what']} — {f['fix']}" for f in found] == lines
    raw = path.read_text(encoding="utf-8").split("\n")
    for f in found:
        assert f["line"] <= f["end_line"] and f["repeat_of"] < f["line"]
        assert flat(f["preview"].rstrip("…"), True)[:12] in flat(raw[f["line"] - 1], True)
        first_copy = flat(raw[f["repeat_of"] - 1], True)
        assert first_copy and first_copy[:12] in flat(body, True)
    glued = next(f for f in found if f["preview"].startswith(JA_TITLE))
    assert glued["repeat_of"] == offset and glued["line"] == glued["end_line"]
    assert empty_site.run("check", "--strict").exit_code == 1, "repeats are warnings"


def test_feed_excerpt_and_digest_use_the_cleaned_body(empty_site, monkeypatch, tmp_path):
    """The feed's content, the derived excerpt and the digest all come from the body after the clean-up."""
    import feedparser

    from .conftest import DIGEST_NOW, SECRET

    monkeypatch.setenv("PUBLISHER_TOKEN_SECRET", SECRET)
    # The first paragraph starts with the title again: the excerpt must start after it.
    body = build(*CASES["en"]).replace(para(EN[0], " "), f"{EN_TITLE} {para(EN[0], ' ')}", 1)
    empty_site.write_post("copies.md", _site_post(EN_TITLE, body))
    assert empty_site.run("--now", "2026-03-12T20:00:00+09:00").exit_code == 0
    entry = feedparser.parse((empty_site.feeds / "all.atom.xml").read_bytes()).entries[0]
    content = re.sub(r"<[^>]+>", "", entry.content[0].value)
    for s in [s for p in EN for s in p]:
        assert count(content, s, False) == 1, s
    assert EN_TITLE not in content
    assert entry.summary.startswith(EN[0][0])
    empty_site.run("subscribers", "add", "all@example.com")
    preview = empty_site.run("--now", DIGEST_NOW, "digest", "--preview", str(tmp_path / "prev"))
    assert preview.exit_code == 0, preview.output
    digest = (tmp_path / "prev" / "digest.txt").read_text(encoding="utf-8")
    assert EN[0][0] in digest and f"{EN_TITLE} {EN[0][0]}" not in digest


POOL_JA = [s for p in JA for s in p]
POOL_EN = [s for p in EN for s in p]


@given(st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_mix_of_copies_keeps_each_sentence_exactly_once(data):
    """Random posts: original sentences, exact copies (some in bold), copies split mid-sentence across
    paragraphs, headings, earlier paragraphs glued into one and cut off mid-sentence, short sign-offs
    anywhere. Every sentence stays (exactly once unless short), first copies in order."""
    cjk = data.draw(st.booleans())
    pool, sep, short = (POOL_JA, "", JA_SHORT) if cjk else (POOL_EN, " ", EN_SHORT)
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=40))
    paragraphs, current, used = [], [], []
    for i in picks:
        s = pool[i]
        op = data.draw(st.sampled_from(["sentence", "sentence", "break", "split", "heading", "short", "bold", "glue"]))
        used += [] if op == "short" else [s]
        if op == "glue" and paragraphs:
            if current:
                paragraphs.append(sep.join(current))
                current = []
            start = data.draw(st.integers(0, len(paragraphs) - 1))
            glued = " ".join(paragraphs[start:start + 6])
            paragraphs.append(glued[:data.draw(st.integers(len(glued) // 2, len(glued)))].rstrip())
            used.pop()
            continue
        if op == "bold":
            s = f"**{s}**"
        if op == "break" and current:
            paragraphs.append(sep.join(current))
            current = []
        if op == "split":
            cut = len(s) // 2 if cjk else s.index(" ", len(s) // 3)
            current.append(s[:cut].rstrip())
            paragraphs.append(sep.join(current))
            current = [s[cut:].lstrip()]
            continue
        if op == "heading":
            paragraphs.append(sep.join(current)) if current else None
            paragraphs.append(JA_HEADING if cjk else EN_HEADING)
            current = []
        current.append(short if op == "short" else s)
    paragraphs.append(sep.join(current))
    body = "\n\n".join(p for p in paragraphs if p)
    out = clean(body, "t").text
    # Sentences written once stay once; longer ones stay once however often they were copied; a short one
    # (under sentence_min_chars) copied on its own may stay more than once, but never more than written.
    counts = {s: count(body, s, cjk) for s in used}
    for s, n in counts.items():
        long = len(sentence_key(s)) >= ON.sentence_min_chars
        assert count(out, s, cjk) == 1 if n == 1 or long else 1 <= count(out, s, cjk) <= n, body
    flat_out = flat(out, cjk)
    positions = [flat_out.index(flat(s, cjk)) for s in counts]
    assert positions == sorted(positions), body


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
@settings(max_examples=300, deadline=None)
def test_garbage_never_breaks_the_clean_up(text):
    body = "\n\n".join([text, text[: len(text) // 2], text, "**" + text + "**"])
    result = clean(body, text[:20] or "t")
    assert isinstance(result.text, str)
    for f in result.findings:
        assert 5 <= f.line <= 5 + body.count("\n")


@pytest.mark.parametrize("line", ["[" * 100_000, "<" * 100_000, "](" * 50_000, "**a**" + " " * 100_000 + "x",
                                  "|-" + " " * 100_000 + "x", "<http://" * 12_000, "Dr. " * 25_000])
def test_hostile_lines_stay_linear(line):
    """Lines shaped to make a backtracking pattern quadratic: each must take well under a second."""
    start = time.perf_counter()
    clean(f"{line}\n\nA paragraph in between.\n\n{line}x", "t")
    assert time.perf_counter() - start < 10  # quadratic took minutes; linear takes a fraction of a second
