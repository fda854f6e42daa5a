"""Sentences a post repeats: prose split into sentences, each compared with what came before, copies cut.

Works on the blocks `cleanup.clean_body` made (lists of (file line, text) and a fenced flag), so the two
modules stay independent. Only prose is ever cut: headings, lists, quotes, tables, HTML and code stay as
they are, though the sentences of headings, lists and quotes count as written (prose that repeats them
later is cut). Promises:

- the first copy of anything is kept, in place; only a sentence whose text (or a near copy of it) came
  earlier is ever cut, so a sentence written once is never lost;
- a sentence shorter than `sentence_min_chars` is cut only inside a run of copied sentences that is long
  enough, or with a paragraph made only of copies — never on its own;
- a near copy (a few characters changed) is cut only inside a run: next to a copy of the sentence that
  followed or preceded its original.

Cost is linear in the length of the post: sentences are found by hashing their normalised text; near
copies are looked up by the expected next sentence and by 10-character anchors at both ends (a bounded
list each), never by comparing every pair.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

from ..config import CleanupConfig
from ..errors import Finding

Lines = list[tuple[int, str]]

_CLOSERS = "\"'”’」』）)\\]】〉》〕］*_~"
_TERM_RE = re.compile(f"[。！？!?.．…]+[{_CLOSERS}]*")
# Every pattern here stays linear on hostile lines ("[[[[…", "](](…", long runs of spaces): no class in a
# repeated part can also match the character that would start the next attempt.
_MASK_RE = re.compile(r"`[^`\n]*`|\]\([^()\s\]]*\)|<https?://[^<>\s]*>|https?://[^\s<>]*[^\s<>.,;:!?。、！？）)」』]")
_NEVER_ENDS = frozenset("mr mrs ms dr prof sr jr st vs etc cf fig figs no nos approx ca incl esp viz al resp misc "
                        "dept est vol jan feb mar apr jun jul aug sep sept oct nov dec".split())
_BULLETS = "-*+•・●○■□◆◇▪►▶※—–"
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}(?:\s|$)")
_BOLD_LINE_RE = re.compile(r"^\s{0,3}(\*\*|__)((?:(?!\1).)+)\1\s*(?:[:：]\s*)?$")
_INNER_END_RE = re.compile(r"[。！？]|[.!?]\s")
_SETEXT_RE = re.compile(r"^\s{0,3}(?:=+|-+)\s*$")
_LIST_RE = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,9}[.)])(?:\s|$)")
_QUOTE_RE = re.compile(r"^\s{0,3}>")
_HTML_RE = re.compile(r"^\s{0,3}<(?:[A-Za-z][A-Za-z0-9-]*[\s/>]|[A-Za-z][A-Za-z0-9-]*$|/[A-Za-z]|!--|\?|!\[CDATA\[)")
_CODE_RE = re.compile(r"^(?: {4}|\t)")
_MARKUP_RE = re.compile(r"^(?:\s*(?:#{1,6}|>+|[-*+•・●○■□◆◇▪►▶※]|\d{1,3}[.)]))+\s+")
_MARKUP_LEAD = frozenset(" \t#>-*+=|<_~`0123456789")  # a line starting otherwise is prose
_MARKUP_FIRST = frozenset(" \t#>-*+•・●○■□◆◇▪►▶※0123456789")
_LINK_RE = re.compile(r"!?\[([^\[\]\n]*)\]\([^()\n]*\)|<[^<>\n]*>")
_DROP_RE = re.compile(r"[\s*_~`]+")
_DIGITS_RE = re.compile(r"\d+")
_SPACE_RE = re.compile(r"\s+")
_EMPHASIS = ("**", "__", "~~")

ANCHOR = 10  # characters at each end of a sentence that index it for near-copy lookup
PREFIX = 4  # characters that index a sentence for "this fragment is how it starts" lookup
BUCKET = 16  # sentences kept per index entry: lookups stay bounded on repetitive text
GAP = 3  # first copies this far apart still count as "the sentence that came next"
SPLIT_TRIES, SPLIT_SPAN = 6, 400  # where a known sentence glued after other text is looked for: positions, chars
NEAR_MIN, NEAR_MAX, NEAR_EDITS = 12, 2000, 24  # near copies: sentence lengths considered, most edits allowed
PREVIEW = 60


@dataclass(slots=True)
class _Unit:
    """A sentence, or a fragment of one (a heading, a line without a terminator, a cut-off end)."""

    block: int  # index of its block; -1 for the removed title line (the last of the prepared blocks)
    start: int  # span in the block's text ("\n".join of its lines)
    end: int
    line: int  # file line where it starts
    key: str  # normalised text: what is compared
    closed: bool  # ends with a sentence terminator
    prose: bool  # may be cut (headings, list items and quotes never are)
    lo: int = -1  # first copy it repeats: units lo..hi (unit ids); -1 when it is itself a first copy
    hi: int = -1
    how: str = ""  # exact, part (split across two units), prefix (a cut-off start), near
    tails: list | None = None  # (key, match) of what follows its first spaces, computed once
    heading: bool = False  # a heading: never cut, but what is glued after it on its line may be


@lru_cache(maxsize=4096)
def sentence_key(text: str) -> str:
    """Text as compared: width forms folded (NFKC), case folded, Markdown emphasis, links, list and heading
    markers, whitespace and the final terminator dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if "[" in text or "<" in text:
        text = _LINK_RE.sub(lambda m: m.group(1) or "", text)
    if text[:1] in _MARKUP_FIRST:
        text = _MARKUP_RE.sub("", text)
    return _DROP_RE.sub("", text).rstrip("。.!?")


def _is_cjk(ch: str) -> bool:
    """Japanese or Chinese script, or a full-width form (a range test: no regex to compile at import)."""
    return bool(ch) and ("\u3000" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u4dbf" or "\u4e00" <= ch <= "\u9fff"
                         or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef")


def _masked(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _MASK_RE.finditer(text)]


def _in_spans(pos: int, spans: list[tuple[int, int]], starts: list[int]) -> bool:
    i = bisect_right(starts, pos) - 1
    return i >= 0 and spans[i][0] <= pos < spans[i][1]


def _period_ends(text: str, a: int, b: int, unit_start: int) -> bool:
    """Whether the '.' (or '…', '...') at text[a:b] ends a sentence."""
    nxt = text[b] if b < len(text) else ""
    if text[a] == "．" and _is_cjk(nxt):
        return True
    if nxt and not nxt.isspace():
        return False
    rest = text[b:b + 40].lstrip()
    if not rest:
        return True
    follower = rest[0]
    if follower in ",;:":
        return False
    if text[a] != "." or text[a:b].startswith(".."):  # an ellipsis ends a sentence only before a new one
        return follower.isupper() or _is_cjk(follower) or follower in "\"'“‘「『(（[#*"
    if a - unit_start <= 8 and text[unit_start:a].strip().isdigit():
        return False  # a list number glued into running text ("2. Why now")
    j = a
    while j > unit_start and a - j < 12 and (text[j - 1].isascii() and text[j - 1].isalpha() or text[j - 1] == "."):
        j -= 1
    standalone = j == unit_start or text[j - 1].isspace() or text[j - 1] in "(\"'“‘*_[「（"
    word = text[j:a].casefold() if standalone else ""  # "…?c=d. Next" ends a sentence after a URL
    # Abbreviations ("Dr.", "e.g.", "U.S.", "p.m.") and initials ("J. Smith") do not end a sentence; any
    # other word does, even before a lower-case word ("… last spring. iPhone sales").
    return not (word in _NEVER_ENDS or "." in word or len(word) == 1)


def _line_breaks(text: str) -> list[int]:
    """Offsets of line breaks that end a sentence: next to Japanese text, before a bullet, after a hard break."""
    out = []
    pos = text.find("\n")
    while pos != -1:
        i, j = pos, pos + 1
        while i > 0 and text[i - 1] in " \t":
            i -= 1
        while j < len(text) and text[j] in " \t":
            j += 1
        c1 = text[i - 1] if i else " "
        c2 = text[j] if j < len(text) else " "
        if _is_cjk(c1) or _is_cjk(c2) or c2 in _BULLETS or c1 in ":：\\" or pos - i >= 2:
            out.append(pos)
        pos = text.find("\n", pos + 1)
    return out


def split_sentences(text: str) -> list[tuple[int, int, bool]]:
    """Sentence spans (start, end, ends with a terminator) of a piece of prose."""
    masks = _masked(text) if ("`" in text or "](" in text or "://" in text) else []
    starts = [s for s, _ in masks]
    stops: dict[int, bool] = {pos: False for pos in _line_breaks(text)} if "\n" in text else {}
    unit_start = 0
    for m in _TERM_RE.finditer(text):
        a, b = m.span()
        if masks and _in_spans(a, masks, starts):
            continue
        ch = text[a]
        if ch in "。！？":
            ends = True
        elif ch in "!?":
            nxt = text[b:b + 1]
            ends = not nxt or nxt.isspace() or _is_cjk(nxt)
        else:
            ends = _period_ends(text, a, b, unit_start)
        if ends:
            stops[b] = True
            unit_start = b
    spans = []
    pos = 0
    for stop in [*sorted(stops), len(text)]:
        start, end = pos, stop
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            spans.append((start, end, stops.get(stop, False)))
        pos = stop
    return spans


def _line_kinds(texts: list[str]) -> list[str]:
    """Each line of a block: prose (may be cut), heading, struct (list, quote: kept, counted) or opaque."""
    if any(_table_delimiter(t) for t in texts) or (texts and _HTML_RE.match(texts[0])):
        return ["opaque"] * len(texts)
    kinds: list[str] = []
    mode = ""
    for i, t in enumerate(texts):
        if mode:
            kinds.append(mode)
        elif (i == 0 or kinds[-1] == "code") and _CODE_RE.match(t):
            kinds.append("code")
        elif _HEADING_RE.match(t) or _bold_heading(t):
            kinds.append("heading")
        elif _SETEXT_RE.match(t) and kinds and kinds[-1] == "prose":
            kinds[-1] = "heading"
            kinds.append("opaque")
        elif _LIST_RE.match(t) or _QUOTE_RE.match(t):
            mode = "struct"
            kinds.append(mode)
        elif t.lstrip().startswith("|"):
            kinds.append("opaque")
        else:
            kinds.append("prose")
    return ["opaque" if k == "code" else k for k in kinds]


def _table_delimiter(line: str) -> bool:
    """A table's delimiter row, like |---|:--:|."""
    return "-" in line and "|" in line and not line.strip(" \t|:-")


def _bold_heading(line: str) -> bool:
    """A line that is all bold and reads like a heading (no full stop; a short question or exclamation at
    most): a heading in all but name. A bold sentence is prose."""
    m = _BOLD_LINE_RE.match(line)
    if not m:
        return False
    inner = m.group(2).strip()
    if _INNER_END_RE.search(inner[:-1]) or inner[-1:] in ("。", "."):
        return False
    return inner[-1:] not in "!?！？" or len(inner) <= 40


class _Block:
    """One block's text with the offsets of its lines."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.text = "\n".join(t for _, t in lines)
        self.starts = []
        pos = 0
        for _, t in lines:
            self.starts.append(pos)
            pos += len(t) + 1

    def line_at(self, pos: int) -> int:
        return self.lines[bisect_right(self.starts, pos) - 1][0]


def _units_of(index: int, block: _Block, out: list[_Unit]) -> None:
    texts = [t for _, t in block.lines]
    if len(texts) == 1 and texts[0][:1] not in _MARKUP_LEAD:  # a one-line paragraph of plain prose
        kinds = ["prose"]
    else:
        kinds = _line_kinds(texts)
    i = 0
    while i < len(texts):
        kind = kinds[i]
        if kind == "opaque":
            i += 1
            continue
        j = i + 1
        if kind == "prose":
            while j < len(texts) and kinds[j] == "prose":
                j += 1
        base = block.starts[i]
        piece = "\n".join(texts[i:j])
        first = len(out)
        for s, e, closed in split_sentences(piece):
            key = sentence_key(piece[s:e])
            if key:
                out.append(_Unit(index, base + s, base + e, block.line_at(base + s), key, closed, kind == "prose"))
        if kind == "heading" and len(out) > first:
            # The heading itself is never cut; sentences glued after it on its line (a pipeline's re-glued
            # copy that starts with a heading) are prose.
            out[first].heading = True
            for u in out[first + 1:]:
                u.prose = True
        i = j


class _Seen:
    """Everything written so far, indexed for the lookups the matcher makes."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.keys: dict[str, tuple[int, int]] = {}
        self.prefix: dict[str, list[int]] = {}
        self.anchors: dict[str, list[int]] = {}
        self.units: list[_Unit] = []

    def add(self, u: _Unit, prev: _Unit | None, text: str) -> None:
        i = len(self.units)
        self.units.append(u)
        span = (u.lo, u.hi) if u.lo >= 0 else (i, i)
        self.keys.setdefault(u.key, span)
        if prev is not None and not prev.closed:
            self.keys.setdefault(prev.key + u.key, (prev.lo if prev.lo >= 0 else i - 1, span[1]))
        if u.lo >= 0:
            return
        for tail, _ in _tails(text, u):  # a sentence written after a lead-in ("Update: …") counts as written
            self.keys.setdefault(tail, span)
        if len(u.key) >= PREFIX:
            _push(self.prefix, u.key[:PREFIX], i)
        if NEAR_MIN <= len(u.key) <= NEAR_MAX and self.ratio > 0:
            digits = _digits(u.key)  # near copies must hold the same numbers: part of the index key
            _push(self.anchors, f"<{u.key[:ANCHOR]}|{digits}", i)
            _push(self.anchors, f">{u.key[-ANCHOR:]}|{digits}", i)

    def expected(self, prev: _Unit | None) -> list[int]:
        """First copies that would come next if `prev` is part of a copied run."""
        if prev is None or prev.lo < 0:
            return []
        return [i for i in range(prev.hi + 1, min(prev.hi + 1 + GAP, len(self.units))) if self.units[i].lo < 0]

    def starting_with(self, key: str, prev: _Unit | None) -> int:
        for i in self.expected(prev) + self.prefix.get(key[:PREFIX], []):
            if self.units[i].key.startswith(key):
                return i
        return -1

    def near(self, key: str, prev: _Unit | None) -> int:
        if not NEAR_MIN <= len(key) <= NEAR_MAX or self.ratio <= 0:
            return -1
        edits = min(NEAR_EDITS, int(len(key) * self.ratio))
        if edits < 1:
            return -1
        digits = _digits(key)
        expected = [i for i in self.expected(prev) if _digits(self.units[i].key) == digits]
        candidates = dict.fromkeys(expected + self.anchors.get(f"<{key[:ANCHOR]}|{digits}", [])
                                   + self.anchors.get(f">{key[-ANCHOR:]}|{digits}", []))
        for i in candidates:
            other = self.units[i].key
            if abs(len(other) - len(key)) > edits:
                continue
            if _levenshtein()(key, other, score_cutoff=edits) <= edits:
                return i
        return -1


@lru_cache(maxsize=1)
def _levenshtein():
    """rapidfuzz's bounded edit distance, imported on first use: passes that render nothing never load it."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance


def _digits(key: str) -> str:
    return " ".join(_DIGITS_RE.findall(key))


def _push(index: dict[str, list[int]], key: str, i: int) -> None:
    bucket = index.setdefault(key, [])
    if len(bucket) < BUCKET:
        bucket.append(i)
    else:  # keep the oldest half and the most recent: both ends of a long post stay findable
        bucket[BUCKET // 2:] = bucket[BUCKET // 2 + 1:] + [i]


def _match(units: deque[_Unit], blocks: list[_Block], ratio: float) -> list[_Unit]:
    """Every unit in document order, each marked with the first copy it repeats (if any)."""
    seen = _Seen(ratio)
    keys = seen.keys
    out: list[_Unit] = []
    prev = None
    while units:
        u = units.popleft()
        hit = keys.get(u.key) if u.closed and not u.heading and u.lo < 0 else None
        if hit:  # the common case in a repetitive post: a whole sentence seen before
            u.lo, u.hi, u.how = *hit, "exact"
            seen.units.append(u)
            if prev is not None and not prev.closed:
                keys.setdefault(prev.key + u.key, (prev.lo if prev.lo >= 0 else len(seen.units) - 2, hit[1]))
        else:
            if u.lo < 0:
                _match_one(u, prev, units, seen, blocks)
            seen.add(u, prev, blocks[u.block].text)
        out.append(u)
        prev = u
    return out


def _match_one(u: _Unit, prev: _Unit | None, pending: deque[_Unit], seen: _Seen, blocks: list[_Block]) -> None:
    if u.heading and _split_known_head(u, pending, seen, blocks[u.block]):
        return  # a heading with a sentence glued after it: the heading stays, the sentence is matched alone
    nxt = pending[0] if pending else None
    if not u.closed and nxt is not None and nxt.lo < 0:  # a sentence split in two (across paragraphs)
        hit = seen.keys.get(u.key + nxt.key)
        if hit:
            u.lo, u.hi, u.how = *hit, "part"
            nxt.lo, nxt.hi, nxt.how = *hit, "part"
            return
    hit = seen.keys.get(u.key)
    if hit:
        u.lo, u.hi, u.how = *hit, "exact"
        return
    if not u.closed and len(u.key) >= PREFIX:
        i = seen.starting_with(u.key, prev)
        if i >= 0:
            u.lo, u.hi, u.how = i, i, "prefix"
            return
    if (u.prose or u.heading) and _split_known_head(u, pending, seen, blocks[u.block]):
        return
    if (u.prose or u.heading) and _split_known_tail(u, pending, blocks[u.block], seen):
        _match_one(u, prev, pending, seen, blocks)  # what came before the known sentence, on its own
        return
    i = seen.near(u.key, prev)
    if i >= 0:
        u.lo, u.hi, u.how = i, i, "near"


def _tails(text: str, u: _Unit) -> list[tuple[str, re.Match]]:
    """Keys of what follows the first few spaces in a unit where a sentence could start (not before a
    lower-case word or punctuation); a bounded number, from the start of the unit."""
    if u.tails is None:
        u.tails = []
        tries = 0
        for m in _SPACE_RE.finditer(text, u.start, min(u.end, u.start + SPLIT_SPAN)):
            first = text[m.end()]
            if first.islower() or first in ",.;:、。)]）」』":
                continue
            key = sentence_key(text[m.end():u.end])
            if len(key) >= PREFIX:
                u.tails.append((key, m))
            tries += 1
            if tries == SPLIT_TRIES:
                break
    return u.tails


def _split_known_head(u: _Unit, pending: deque[_Unit], seen: _Seen, block: _Block) -> bool:
    """A known heading, title or sentence glued before more text by a space (a heading run into its paragraph,
    "…spring. and then"): split it off; the rest is matched on its own."""
    text = block.text
    if not _SPACE_RE.search(text, u.start, u.end):
        return False
    known = [seen.units[i] for i in seen.prefix.get(u.key[:PREFIX], ())]
    known = [k for k in known if len(k.key) < len(u.key) and u.key.startswith(k.key)]
    if not known:
        return False
    head = max(known, key=lambda k: len(k.key))
    head_key = head.key
    spaces = tries = 0
    for m in _SPACE_RE.finditer(text, u.start, u.end):
        # The key drops spaces and a little markup: only where the text before this space has about as many
        # other characters as the known key is it worth comparing (a few comparisons, however long the unit).
        visible = m.start() - u.start - spaces
        spaces += m.end() - m.start()
        if visible < len(head_key):
            continue
        if visible > 2 * len(head_key) + 16 or tries == SPLIT_TRIES:
            break
        tries += 1
        if sentence_key(text[u.start:m.start()]) != head_key:
            continue
        tail_key = sentence_key(text[m.end():u.end])
        if tail_key and (head.closed or not text[m.end()].islower()):
            key = head_key
            pending.appendleft(_Unit(u.block, m.end(), u.end, block.line_at(m.end()), tail_key, u.closed, True))
            u.end, u.key, u.closed = m.start(), key, False
            u.lo, u.hi, u.how = *seen.keys[key], "exact"
            return True
    return False


def _split_known_tail(u: _Unit, pending: deque[_Unit], block: _Block, seen: _Seen) -> bool:
    """A known sentence glued after other text (a heading, the title, a cut-off sentence, joined by a space):
    split it off, matched; `u` keeps what came before it, unmatched."""
    text = block.text
    for key, m in _tails(text, u):
        cut, tail = m.span()
        hit = seen.keys.get(key)
        head_key = sentence_key(text[u.start:cut]) if hit else ""
        if hit and head_key:
            pending.appendleft(_Unit(u.block, tail, u.end, block.line_at(tail), key, u.closed, True, *hit, "exact"))
            u.end, u.key, u.closed, u.tails = cut, head_key, False, None
            return True
    return False


def _linked(a: _Unit, b: _Unit) -> bool:
    """Whether b follows a in the copy as its first copy followed a's: one copied run."""
    if a.lo < 0 or b.lo < 0:
        return False
    step = b.lo - a.hi
    if a.how == b.how == "part" and (a.lo, a.hi) == (b.lo, b.hi):
        return True
    return 1 <= step <= GAP


def _decide(units: list[_Unit], min_chars: int) -> list[bool]:
    """Which units to cut: copied runs long enough, and prose paragraphs made only of copies."""
    n = len(units)
    cut = [False] * n
    accepted = [u.lo >= 0 for u in units]
    i = 0
    while i < n:
        if units[i].lo < 0:
            i += 1
            continue
        j = i + 1
        while j < n and _linked(units[j - 1], units[j]):
            j += 1
        if j - i == 1 and units[i].how == "near":
            accepted[i] = False  # a near copy alone is a different sentence until its neighbours say otherwise
        elif sum(len(u.key) for u in units[i:j] if u.prose) >= min_chars:
            for k in range(i, j):
                cut[k] = units[k].prose
        i = j
    _cut_whole_paragraphs(units, accepted, cut, min_chars)
    return cut


def _cut_whole_paragraphs(units: list[_Unit], accepted: list[bool], cut: list[bool], min_chars: int) -> None:
    i = 0
    while i < len(units):
        j = i
        while j < len(units) and units[j].block == units[i].block:
            j += 1
        group = range(i, j)
        if (units[i].block >= 0 and all(units[k].prose and accepted[k] for k in group)
                and sum(len(units[k].key) for k in group) >= min_chars):
            for k in group:
                cut[k] = True
        i = j


def _cut_spans(block: _Block, ranges: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Merged (start, end, residue) cuts of a block; an emphasis marker left open or closed is kept."""
    text = block.text
    merged: list[list[int]] = []
    for s, e in ranges:
        if merged and not text[merged[-1][1]:s].strip():
            merged[-1][1] = e
        else:
            merged.append([s, e])
    out = []
    before = dict.fromkeys(_EMPHASIS, 0)  # markers seen before the current cut, counted once over the block
    counted = 0
    for s, e in merged:
        piece = text[s:e]
        odd = [mark for mark in _EMPHASIS if piece.count(mark) % 2]
        for mark in _EMPHASIS:
            before[mark] += text.count(mark, counted, s)
        counted = s
        if odd and before[odd[0]] % 2:
            # The cut closes an emphasis opened before it: keep the closer, glued to the text before.
            while s > 0 and text[s - 1] in " \t":
                s -= 1
        else:
            # Nothing left open, or the cut opens an emphasis that goes on after it: keep the opener there.
            while e < len(text) and text[e] in " \t":
                e += 1
        out.append((s, e, "".join(odd)))
    return out


def _rebuild(block: _Block, cuts: list[tuple[int, int, str]]) -> Lines:
    """The block's lines with the cuts made; lines left blank go, the others keep their file line numbers."""
    parts: list[tuple[int, str]] = []
    pos = 0
    for s, e, residue in cuts:
        parts.append((pos, block.text[pos:s]))
        if residue:
            parts.append((s, residue))
        pos = e
    parts.append((pos, block.text[pos:]))
    rows: list[tuple[int, str]] = []
    current, origin = "", -1
    for src, part in parts:
        offset = 0
        for k, chunk in enumerate(part.split("\n")):
            if k:
                rows.append((origin, current))
                current, origin = "", -1
            if origin < 0 and (chunk or k):
                origin = src + offset
            current += chunk
            offset += len(chunk) + 1
    rows.append((origin, current))
    original = dict(block.lines)
    out = []
    for origin, text in rows:
        if origin < 0 or not text.strip():
            continue
        number = block.line_at(origin)
        out.append((number, text if text == original.get(number) else text.rstrip()))
    return out


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[:PREVIEW].rstrip() + "…"


def _findings(units: list[_Unit], cut: list[bool], blocks: list[_Block], path: str) -> list[Finding]:
    out = []
    i = 0
    while i < len(units):
        if not cut[i]:
            i += 1
            continue
        j = i + 1
        while j < len(units) and cut[j] and (units[j].block == units[j - 1].block
                                             or units[j].block == units[j - 1].block + 1
                                             and _linked(units[j - 1], units[j])):
            j += 1
        run = units[i:j]
        first, last = run[0], run[-1]
        end_line = blocks[last.block].line_at(max(last.start, last.end - 1))
        originals = [units[k].line for u in run for k in (u.lo, u.hi)]
        lo, hi = min(originals), max(originals)
        lines = f"line {first.line}" if end_line == first.line else f"lines {first.line}–{end_line}"
        of = f"line {lo}" if lo == hi else f"lines {lo}–{hi}"
        same = [u for u in run[:8] if u.block == first.block]
        preview = _preview(blocks[first.block].text[first.start:same[-1].end])
        out.append(Finding(path, first.line, "warning",
                           f"removed {len(run)} repeated sentence(s) on {lines}, first written on {of}: «{preview}»",
                           "delete the repeated text from the post", "", end_line, lo, preview))
        i = j
    return out


def remove_repeated_sentences(blocks: list[tuple[Lines, bool]], title_lines: Lines, cfg: CleanupConfig,
                              path: str) -> tuple[list[Lines], list[Finding]]:
    """Each block's lines with repeated sentences cut, and a finding per cut run.

    `title_lines` are lines already removed because they repeat the title: they count as written first.
    """
    title = _Block(title_lines or [(0, "")])
    prepared = [_Block(lines) for lines, _ in blocks] + [title]
    units: list[_Unit] = []
    for s, e, closed in split_sentences(title.text):
        key = sentence_key(title.text[s:e])
        if key:
            units.append(_Unit(-1, s, e, title.line_at(s), key, closed, False))
    for index, (block, (_, fenced)) in enumerate(zip(prepared[:-1], blocks, strict=True)):
        if not fenced:
            _units_of(index, block, units)
    matched = _match(deque(units), prepared, cfg.sentence_near_ratio)
    cut = _decide(matched, cfg.sentence_min_chars)
    by_block: dict[int, list[tuple[int, int]]] = {}
    for u, c in zip(matched, cut, strict=True):
        if c:
            by_block.setdefault(u.block, []).append((u.start, u.end))
    lines = [lines for lines, _ in blocks]
    for index, ranges in by_block.items():
        lines[index] = _rebuild(prepared[index], _cut_spans(prepared[index], ranges))
    return lines, _findings(matched, cut, prepared, path)
