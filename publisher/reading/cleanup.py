"""Clean the traces an automated writing pipeline leaves in a post body, reporting each clean-up."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from ..config import CleanupConfig
from ..errors import Finding

# Control and invisible characters that never belong in prose. Tab and newline stay; so do ZWJ/ZWNJ,
# which emoji sequences and some scripts need.
_INVISIBLE_RE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    "\ufeff\ufff9-\ufffb\ufffe\uffff]"
)
_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_CLOSING = set("。．.!?！？」』）)】〉》〕］]\"'”’…‥〜~ー♪☆★♡♥")
_MD_DECORATION = "*_~` \t"


@dataclass(frozen=True, slots=True)
class Cleaned:
    text: str
    findings: tuple[Finding, ...]


@dataclass(slots=True)
class _Block:
    """A run of non-blank lines (a paragraph, list, heading or fenced code block)."""

    lines: list[tuple[int, str]]
    fenced: bool

    @property
    def start(self) -> int:
        return self.lines[0][0]

    @property
    def end(self) -> int:
        return self.lines[-1][0]

    @property
    def norm(self) -> str:
        return " ".join(" ".join(text for _, text in self.lines).split())


@lru_cache(maxsize=32)
def _marker_re(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def _norm_title(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"^\s{0,3}#{1,6}\s*", "", text)
    return re.sub(r"[\s*_`\"'「」『』【】]", "", text)


def _split_blocks(lines: list[tuple[int, str]]) -> list[_Block]:
    blocks: list[_Block] = []
    current: list[tuple[int, str]] = []
    fence: str | None = None
    for number, text in lines:
        m = _FENCE_RE.match(text)
        if fence:
            current.append((number, text))
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                blocks.append(_Block(current, True))
                current, fence = [], None
        elif m:
            if current:
                blocks.append(_Block(current, False))
            current, fence = [(number, text)], m.group(1)
        elif text.strip():
            current.append((number, text))
        elif current:
            blocks.append(_Block(current, False))
            current = []
    if current:
        blocks.append(_Block(current, bool(fence)))
    return blocks


def _join(blocks: list[_Block]) -> str:
    return "\n\n".join("\n".join(text for _, text in b.lines) for b in blocks) + ("\n" if blocks else "")


def strip_invisible(text: str) -> tuple[str, int]:
    """Text without control and invisible characters, and how many were removed."""
    return _INVISIBLE_RE.subn("", text)


def _remove_invisible(lines: list[tuple[int, str]], path: str) -> tuple[list[tuple[int, str]], list[Finding]]:
    if not any(_INVISIBLE_RE.search(text) for _, text in lines):
        return lines, []
    count, first = 0, 0
    out = []
    for number, text in lines:
        cleaned, n = strip_invisible(text)
        if n:
            count += n
            first = first or number
        out.append((number, cleaned))
    if not count:
        return out, []
    return out, [Finding(path, first, "info", f"removed {count} invisible or control character(s)",
                         "remove them from the source text")]


def _remove_markers(blocks: list[_Block], patterns: tuple[str, ...], path: str) -> list[Finding]:
    marker = _marker_re(patterns)
    findings = []
    for block in blocks:
        if block.fenced:
            continue
        kept = []
        for number, text in block.lines:
            if marker.search(text.strip()):
                findings.append(Finding(path, number, "info", f"removed marker line {text.strip()!r}",
                                        "delete the line from the post"))
            else:
                kept.append((number, text))
        block.lines = kept
    blocks[:] = [b for b in blocks if b.lines]
    return findings


def _remove_title_repeat(blocks: list[_Block], title: str, path: str) -> list[Finding]:
    if not blocks or blocks[0].fenced:
        return []
    number, first = blocks[0].lines[0]
    if not first.strip() or _norm_title(first) != _norm_title(title):
        return []
    del blocks[0].lines[0]
    if not blocks[0].lines:
        del blocks[0]
    return [Finding(path, number, "info", "removed the first body line, which repeats the title",
                    "start the body after the title")]


def _remove_repeats(blocks: list[_Block], min_chars: int, path: str) -> list[Finding]:
    """Drop runs of blocks that repeat earlier blocks word for word; short lone repeats (headings) stay."""
    seen: dict[str, int] = {}
    repeat, first_line = [], []
    for block in blocks:
        norm = block.norm
        repeat.append(not block.fenced and norm in seen)
        first_line.append(seen.setdefault(norm, block.start))
    findings, keep = [], [True] * len(blocks)
    i = 0
    while i < len(blocks):
        if not repeat[i]:
            i += 1
            continue
        j = i
        while j < len(blocks) and repeat[j]:
            j += 1
        if sum(len(b.norm) for b in blocks[i:j]) >= min_chars:
            keep[i:j] = [False] * (j - i)
            preview = " ".join(blocks[i].norm.split()[:12])[:60]
            findings.append(Finding(
                path, blocks[i].start, "warning",
                f"removed {j - i} paragraph(s) (lines {blocks[i].start}–{blocks[j - 1].end}) repeating earlier text "
                f"from line {first_line[i]}", "delete the repeated text from the post", "", blocks[j - 1].end,
                first_line[i], preview))
        i = j
    blocks[:] = [b for b, k in zip(blocks, keep, strict=True) if k]
    return findings


def _remove_repeated_sentences(blocks: list[_Block], title_lines: list[tuple[int, str]], cfg: CleanupConfig,
                               path: str) -> list[Finding]:
    """Sentence-level repeats (`repeats.py`, imported when first needed): the blocks keep their first copies only."""
    from .repeats import remove_repeated_sentences

    kept, findings = remove_repeated_sentences([(b.lines, b.fenced) for b in blocks], title_lines, cfg, path)
    for block, lines in zip(blocks, kept, strict=True):
        block.lines = lines
    blocks[:] = [b for b in blocks if b.lines]
    return findings


def _check_truncation(blocks: list[_Block], path: str) -> list[Finding]:
    prose = [b for b in blocks if not b.fenced]
    if not prose or prose[-1] is not blocks[-1]:
        return []
    number, last = prose[-1].lines[-1]
    text = last.strip().rstrip(_MD_DECORATION)
    if not text or text.startswith(("|", "<", "![", "[", "http://", "https://")) or text.endswith(">"):
        return []
    ch = text[-1]
    if ch in _CLOSING or unicodedata.category(ch) in ("So", "Sk"):
        return []
    tail = text[-20:]
    return [Finding(path, number, "warning", f"the body ends mid-sentence (…{tail})",
                    "finish the last sentence, or check whether the text was cut off")]


def clean_body(body: str, title: str, cfg: CleanupConfig, path: str, first_line: int) -> Cleaned:
    """Apply every enabled clean-up to a Markdown body; line numbers in findings are the file's."""
    lines = list(enumerate(body.split("\n"), start=first_line))
    findings: list[Finding] = []
    if cfg.invisible_chars:
        lines, found = _remove_invisible(lines, path)
        findings += found
    blocks = _split_blocks(lines)
    if cfg.markers and cfg.marker_patterns:
        findings += _remove_markers(blocks, cfg.marker_patterns, path)
    title_lines: list[tuple[int, str]] = []
    if cfg.title_repeat:
        first = blocks[0].lines[:1] if blocks and not blocks[0].fenced else []
        found = _remove_title_repeat(blocks, title, path)
        title_lines = first if found else []
        findings += found
    if cfg.repeated_blocks:
        findings += _remove_repeats(blocks, cfg.repeated_min_chars, path)
    if cfg.repeated_sentences:
        findings += _remove_repeated_sentences(blocks, title_lines, cfg, path)
    if cfg.truncation:
        findings += _check_truncation(blocks, path)
    return Cleaned(_join(blocks), tuple(findings))


def plain_text(markdown_text: str) -> str:
    """Markdown → rough plain text, for reading time and derived excerpts."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", markdown_text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+\.)\s+", "", text, flags=re.MULTILINE)
    return re.sub(r"[*_`~]+", "", text)


def guess_title(text: str) -> str:
    """A title guessed from a post without front matter: its first heading-like line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        m = re.match(r"^#{1,6}\s+(.+)$", line) or re.match(r"^\*\*(.+)\*\*$", line)
        if m:
            return m.group(1).strip()
    for line in lines:
        has_cjk = re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", line)
        if has_cjk and 8 <= len(line) <= 100 and not line.endswith("。"):
            return line
    return lines[0][:100] if lines else "Untitled"
