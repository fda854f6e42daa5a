"""Subscribers: validation, add/remove, CSV import (bad rows by line, idempotent), export."""

from __future__ import annotations

import csv
import io

import pytest

from publisher.subscribers import SubscriberError, normalize_email


@pytest.mark.parametrize(("raw", "expected"), [
    ("Reader@Example.COM", "reader@example.com"),
    ("  a.b+tag@sub.example.jp ", "a.b+tag@sub.example.jp"),
])
def test_normalize_email(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "no-at-sign", "a@b", "a@@b.com", "a b@example.com", "a@example.com\nBcc: x@y.z",
                                 "Name <a@example.com>", "a..b@example.com", "a@-bad-.com", "日本@example.com"])
def test_invalid_addresses(raw):
    with pytest.raises(SubscriberError):
        normalize_email(raw)


def test_add_update_remove_and_list(site):
    assert "added" in site.run("subscribers", "add", "a@example.com", "--name", "A").output
    assert "unchanged" in site.run("subscribers", "add", "a@example.com", "--name", "A").output
    assert "updated" in site.run("subscribers", "add", "a@example.com", "--category", "半導体").output
    listed = site.run("subscribers", "list").output
    assert "a@example.com\tactive\t半導体" in listed
    assert "unsubscribed" in site.run("subscribers", "remove", "a@example.com").output
    again = site.run("subscribers", "add", "a@example.com")
    assert again.exit_code == 1 and "--resubscribe" in again.output
    assert "updated" in site.run("subscribers", "add", "a@example.com", "--resubscribe").output
    bad = site.run("subscribers", "add", "not-an-address")
    assert bad.exit_code == 2 and "not-an-address" in bad.output
    missing = site.run("subscribers", "remove", "nobody@example.com")
    assert missing.exit_code == 1 and "no such subscriber" in missing.output
    assert "deleted" in site.run("subscribers", "remove", "a@example.com", "--purge").output
    assert "a@example.com" not in site.run("subscribers", "list").output


def test_import_reports_bad_rows_by_line_and_is_idempotent(site):
    path = site.root / "subs.csv"
    path.write_text("email,name,categories\n"
                    "one@example.com,一郎,半導体; 政策\n"
                    "broken-address,Bad,\n"
                    "two@example.com,,\n"
                    ",Empty,\n"
                    "ONE@example.com,一郎,半導体; 政策\n", encoding="utf-8")
    first = site.run("subscribers", "import", str(path))
    assert first.exit_code == 1
    assert f"{path}:3: 'broken-address' is not a valid address" in first.output
    assert f"{path}:5: the address is empty" in first.output
    assert "2 added" in first.output and "2 bad row(s)" in first.output
    second = site.run("subscribers", "import", str(path))
    assert "3 unchanged" in second.output and "added" not in second.output
    site.run("subscribers", "remove", "two@example.com")
    third = site.run("subscribers", "import", str(path))
    assert "1 unsubscribed" in third.output, "an import never re-subscribes"
    assert "two@example.com\tunsubscribed" in site.run("subscribers", "list").output


def test_import_without_email_column(site):
    path = site.root / "subs.csv"
    path.write_text("address,name\na@example.com,A\n")
    result = site.run("subscribers", "import", str(path))
    assert result.exit_code == 2 and "no 'email' column" in result.output


def test_export_round_trips(site, tmp_path):
    site.run("subscribers", "add", "a@example.com", "--name", "A, with comma", "--category", "半導体",
             "--category", "政策")
    exported = site.run("subscribers", "export").stdout
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert rows[0]["email"] == "a@example.com" and rows[0]["name"] == "A, with comma"
    assert rows[0]["categories"] == "半導体; 政策" and rows[0]["status"] == "active"
    path = tmp_path / "back.csv"
    path.write_text(exported, encoding="utf-8")
    assert "1 unchanged" in site.run("subscribers", "import", str(path)).output
