"""WebSub: hub and self links in every feed, publish pings for exactly the feeds that changed, retries with
backoff that never hold up a pass, and a real run from a post coming due to a subscriber receiving it."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import feedparser
import pytest

from .conftest import FIXED_NOW, post_text
from .servers import free_port
from .test_serve import start_serve, stop, wait_until
from .websub import FeedServer, Hub, Subscriber

TOKYO = ZoneInfo("Asia/Tokyo")
FEEDS = "https://news.example.jp/feeds/"


def use_hubs(site, *hubs: str, **settings: object) -> None:
    """Configure WebSub hubs (and other [feeds] keys) in the site's config."""
    site.set_keys(websub_hubs=list(hubs), **settings)


def feed_urls(site) -> set[str]:
    return {FEEDS + quote(p.relative_to(site.feeds).as_posix()) for p in site.feeds.rglob("*")
            if p.name.endswith((".xml", ".json"))}


@pytest.fixture
def hub():
    with Hub() as server:
        yield server


def test_every_feed_names_its_hubs_and_itself(site):
    use_hubs(site, "https://hub.example.net/", "https://push.example.org/hub")
    site.run("--now", FIXED_NOW)
    for path in site.feeds.rglob("*.xml"):
        url = FEEDS + quote(path.relative_to(site.feeds).as_posix())
        parsed = feedparser.parse(path.read_bytes())
        assert parsed.bozo == 0, path
        links = {(link.rel, link.href) for link in parsed.feed.links}
        assert ("hub", "https://hub.example.net/") in links and ("hub", "https://push.example.org/hub") in links
        assert ("self", url) in links, path
    for path in site.feeds.rglob("*.json"):
        feed = json.loads(path.read_bytes())
        assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example.net/"},
                                {"type": "WebSub", "url": "https://push.example.org/hub"}]
        assert feed["feed_url"] == FEEDS + quote(path.relative_to(site.feeds).as_posix())


def test_no_hub_links_without_hubs(site):
    site.run("--now", FIXED_NOW)
    assert 'rel="hub"' not in (site.feeds / "all.atom.xml").read_text(encoding="utf-8")
    assert "hubs" not in json.loads((site.feeds / "all.json").read_bytes())


def test_pings_name_exactly_the_feeds_that_changed(site, hub):
    use_hubs(site, hub.url)
    first = site.run("--now", FIXED_NOW)
    assert first.exit_code == 0, first.output
    assert "WebSub: 21 ping(s) sent, 0 left for the next pass" in first.output
    pings = hub.state.pings
    assert all(p.content_type == "application/x-www-form-urlencoded" for p in pings)
    assert all(p.form["hub.mode"] == ["publish"] for p in pings)
    assert sorted(hub.state.urls()) == sorted(feed_urls(site)), "one ping per feed written, never the index"

    hub.state.pings.clear()
    site.write_post("2026-05-01-new.md", post_text(title="New research", date="2026-05-01 09:00",
                                                   categories="Research"))
    site.run("--now", FIXED_NOW)
    assert sorted(hub.state.urls()) == sorted(FEEDS + name for name in (
        "all.atom.xml", "all.rss.xml", "all.json",
        "category/research.atom.xml", "category/research.rss.xml", "category/research.json"))

    hub.state.pings.clear()
    unchanged = site.run("--now", FIXED_NOW)
    assert hub.state.pings == [] and "WebSub" not in unchanged.output


def test_dry_run_pings_nothing(site, hub):
    use_hubs(site, hub.url)
    result = site.run("--now", FIXED_NOW, "--dry-run")
    assert "Would notify the WebSub hub(s) with 21 ping(s)" in result.output
    assert hub.state.pings == []


def test_failing_hub_is_retried_with_backoff_within_the_pass(site, hub):
    use_hubs(site, hub.url, formats=["atom"], opml=["atom"], websub_retry_delay=0.2)
    hub.state.answers = [503] * 7 + [429]  # every feed refused once, then one of them a second time
    result = site.run("--now", FIXED_NOW)
    assert "WebSub: 7 ping(s) sent, 0 left for the next pass, 0 given up" in result.output
    assert sorted(hub.state.urls()) == sorted(feed_urls(site))
    refused = [p for p in hub.state.pings if p.status >= 500]
    assert len(refused) == 7 and len(hub.state.pings) == 15
    retried = [p for p in hub.state.pings if p.form["hub.url"] == hub.state.pings[7].form["hub.url"]]
    gaps = [b.at - a.at for a, b in zip(retried, retried[1:], strict=False)]
    assert all(gap >= 0.15 for gap in gaps), f"retries wait for the backoff: {gaps}"
    status = site.run("status").output
    assert "pings 7 sent, 0 pending, 0 given up" in status


def test_unreachable_hub_never_holds_up_a_pass_and_is_retried_next_pass(site):
    port = free_port()
    use_hubs(site, f"http://127.0.0.1:{port}/", formats=["atom"], opml=["atom"], websub_wait=1.0,
             websub_timeout=0.5, websub_retry_delay=0.2)
    started = time.monotonic()
    result = site.run("--now", FIXED_NOW)
    took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "WebSub: 0 ping(s) sent, 7 left for the next pass, 0 given up" in result.output
    assert "ConnectError" in result.output
    assert took < 8, f"the pass waited {took:.1f} s for a dead hub"
    assert (site.feeds / "all.atom.xml").exists()
    status = site.run("status").output
    assert "pings 0 sent, 7 pending, 0 given up" in status and "ConnectError" in status
    # The hub comes back; the next pass (nothing changed in the posts) delivers what was left.
    with Hub(port) as hub:
        time.sleep(1.2)  # past the backoff
        again = site.run("--now", FIXED_NOW)
        assert "WebSub: 7 ping(s) sent, 0 left for the next pass" in again.output
    assert sorted(hub.state.urls()) == sorted(feed_urls(site))
    assert "pings 7 sent, 0 pending" in site.run("status").output


def test_hanging_hub_costs_at_most_the_configured_wait(site, hub):
    use_hubs(site, hub.url, formats=["atom"], opml=["atom"], websub_wait=1.0, websub_timeout=0.5)
    hub.state.hang = 5
    started = time.monotonic()
    result = site.run("--now", FIXED_NOW)
    took = time.monotonic() - started
    assert result.exit_code == 0
    assert "7 left for the next pass" in result.output and "ReadTimeout" in result.output
    assert took < 8, f"{took:.1f} s"


def test_hub_trickling_its_answer_is_cut_off(site, hub):
    """A hub that sends its answer a byte at a time never trips a read timeout; each ping still has a hard
    time limit, and the pass's wait stays bounded."""
    use_hubs(site, hub.url, formats=["atom"], opml=["atom"], websub_wait=0.5, websub_timeout=0.5)
    hub.state.trickle = 0.1
    started = time.monotonic()
    result = site.run("--now", FIXED_NOW)
    took = time.monotonic() - started
    assert result.exit_code == 0
    assert "no answer within 2 s" in result.output and "left for the next pass" in result.output
    assert took < 10, f"{took:.1f} s"


def test_hub_refusing_a_feed_is_given_up_and_reported(site, hub):
    use_hubs(site, hub.url, formats=["atom"], opml=["atom"])
    hub.state.answers = [400] * 7
    result = site.run("--now", FIXED_NOW)
    assert "WebSub: 0 ping(s) sent, 0 left for the next pass, 7 given up" in result.output
    assert f"! {hub.url} refused {FEEDS}all.atom.xml: HTTP 400" in result.output
    status = site.run("status").output
    assert "pings 0 sent, 0 pending, 7 given up" in status and "given up after 1 attempt(s)" in status


def test_a_newer_change_supersedes_a_pending_ping(site):
    """A feed that changes again while its ping waits is pinged once, for its newest state."""
    port = free_port()
    use_hubs(site, f"http://127.0.0.1:{port}/", formats=["atom"], opml=["atom"], websub_wait=0.0)
    site.run("--now", FIXED_NOW)
    site.write_post("2026-05-01-new.md", post_text(title="New", date="2026-05-01 09:00", categories="Research"))
    site.run("--now", FIXED_NOW)
    status = site.run("status").output
    assert "pings 0 sent, 7 pending" in status, "one row per (hub, feed), however often it changed"


def test_serve_delivers_a_due_post_to_a_subscriber_within_two_seconds(site, hub):
    """The real path: `publish serve` publishes a post at its due time, pings the hub, the hub fetches the feed
    from the web server and delivers it to a reader's callback that subscribed through the hub."""
    with FeedServer(site.root) as web, Subscriber() as reader:
        site.set_config('base_url = ""', f'base_url = "{web.url}feeds/"')
        use_hubs(site, hub.url)
        site.run()  # the example posts, published before the service starts
        topic = f"{web.url}feeds/all.atom.xml"
        parsed = feedparser.parse(web.url + "feeds/all.atom.xml")
        hubs = [link.href for link in parsed.feed.links if link.rel == "hub"]
        selfs = [link.href for link in parsed.feed.links if link.rel == "self"]
        assert hubs == [hub.url] and selfs == [topic], "the reader discovers the hub from the feed"
        hub.subscribe(topic, reader)
        due = datetime.now(TOKYO).replace(microsecond=0) + timedelta(seconds=6)
        site.write_post("soon.md", post_text(title="Arrives in real time", date=due.strftime("%Y-%m-%d %H:%M:%S %z")))
        proc = start_serve(site, "--scan-interval", "3600")  # only the due-time job can publish it
        try:
            def arrived():
                return next((d for d in reader.deliveries if b"Arrives in real time" in d.body), None)

            assert wait_until(lambda: arrived() is not None, timeout=30, step=0.01)
        finally:
            out = stop(proc)
        delivery = arrived()
        late = delivery.at - due.timestamp()
        assert late < 2.0, f"delivered {late:.2f} s after the due time\n{out}"
        entry = feedparser.parse(delivery.body).entries[0]
        assert entry.title == "Arrives in real time"
        assert delivery.headers["Content-Type"] == "application/atom+xml"
        assert any(url == topic for url in hub.state.urls())
        assert "websub: " in out and "ping(s) sent" in out
        assert "HTTP Request:" not in out, "serve logs its own lines, not the HTTP client's"


def test_feeds_written_by_a_pass_that_stopped_before_recording_are_still_announced(site, hub):
    """A pass killed after writing the feed files but before recording them (and queuing their pings) leaves
    files newer than the store knows; the next pass finds the same bytes and still tells the hubs."""
    use_hubs(site, hub.url)
    site.run("--now", FIXED_NOW)
    saved = site.root / "before.sqlite3"
    with sqlite3.connect(site.db) as src, sqlite3.connect(saved) as dst:
        src.backup(dst)
    site.write_post("2026-05-01-new.md", post_text(title="New", date="2026-05-01", categories="Research"))
    site.run("--now", FIXED_NOW)
    changed = set(hub.state.urls()[21:])
    assert len(changed) == 6
    with sqlite3.connect(saved) as src, sqlite3.connect(site.db) as dst:  # the store as the killed pass left it
        src.backup(dst)
    hub.state.pings.clear()
    result = site.run("--now", FIXED_NOW)
    assert "Published 1 new post(s)" in result.output and "0 feed file(s) written" in result.output
    assert set(hub.state.urls()) == changed, "exactly the feeds the stopped pass had changed"


def test_serve_stops_promptly_while_a_hub_hangs_and_the_next_start_sends_the_rest(site, hub):
    use_hubs(site, hub.url, websub_timeout=1.0)
    hub.state.hang = 30
    proc = start_serve(site, "--scan-interval", "3600")
    try:
        assert wait_until(lambda: len(hub.state.pings) >= 1 or (site.feeds / "discovery.html").exists())
        time.sleep(0.5)
    finally:
        started = time.monotonic()
        out = stop(proc)  # asserts exit 0 within 30 s
        took = time.monotonic() - started
    assert took < 8, f"stopping took {took:.1f} s:\n{out}"
    status = site.run("status").output
    assert "pings 0 sent, 21 pending, 0 given up" in status, status
    hub.state.hang = 0
    proc = start_serve(site, "--scan-interval", "3600")
    try:
        assert wait_until(lambda: "pings 21 sent, 0 pending" in site.run("status").output, timeout=40, step=0.5)
    finally:
        stop(proc)


def test_a_hub_nobody_here_wrote_takes_the_pings_and_delivers_the_new_post(site):
    """Flask-WebSub's hub reads a publish ping's topic from `hub.topic` (as WebSubHub and other W3C-era hubs
    do; Google's and Superfeedr's read `hub.url`): every ping names the feed both ways, so this hub accepts it,
    fetches the feed and delivers it to the subscriber."""
    from .flask_websub_hub import FlaskWebSub

    with FlaskWebSub(site.root) as real:
        site.set_config('base_url = ""', f'base_url = "{real.feeds_url}"')
        use_hubs(site, real.hub_url)
        first = site.run()
        assert "WebSub: 21 ping(s) sent, 0 left for the next pass, 0 given up" in first.output, first.output
        topic = real.feeds_url + "all.atom.xml"
        real.subscribe(topic)
        site.write_post("new.md", post_text(title="Through a real hub", date="2026-05-01 09:00"))
        result = site.run()
        assert "WebSub: 3 ping(s) sent, 0 left for the next pass, 0 given up" in result.output, result.output
        assert all(form["hub.topic"] == form["hub.url"] and status == 202 for form, status in real.log.pings)
        assert wait_until(lambda: any(b"Through a real hub" in body for _, _, body in real.log.deliveries),
                          timeout=20, step=0.05)
    delivered = next(body for _, t, body in real.log.deliveries if t == topic and b"Through a real hub" in body)
    assert feedparser.parse(delivered).entries[0].title == "Through a real hub"


def test_a_hub_that_redirects_the_ping_to_a_get_is_not_counted_as_told(site, httpserver):
    """A 301/302/303 makes an HTTP client repeat a POST as a GET, which tells the hub nothing: such a ping is not
    'sent' but given up, naming the redirect; a 307/308 keeps the POST and its form, and counts."""
    from werkzeug import Response

    forms = []

    def publish(request):
        forms.append(request.form.to_dict(flat=False))
        return Response(status=204)

    httpserver.expect_request("/moved", method="POST").respond_with_response(
        Response(status=302, headers={"Location": httpserver.url_for("/elsewhere")}))
    httpserver.expect_request("/elsewhere", method="GET").respond_with_data("a page, not a hub")
    httpserver.expect_request("/kept", method="POST").respond_with_response(
        Response(status=307, headers={"Location": httpserver.url_for("/hub")}))
    httpserver.expect_request("/hub", method="POST").respond_with_handler(publish)
    use_hubs(site, httpserver.url_for("/moved"), httpserver.url_for("/kept"), formats=["atom"], opml=["atom"],
             websub_wait=1.0)
    result = site.run("--now", FIXED_NOW)
    assert "WebSub: 7 ping(s) sent, 0 left for the next pass, 7 given up" in result.output, result.output
    assert "redirected" in result.output and "/elsewhere" in result.output
    assert len(forms) == 7 and all(form["hub.mode"] == ["publish"] and form["hub.topic"] for form in forms)
    status = site.run("status").output
    assert "pings 7 sent, 0 pending, 7 given up" in status, status


def test_a_hub_taken_out_of_the_config_hears_nothing_more(site, hub):
    """Pings still pending for a hub the operator removed from [feeds] websub_hubs are dropped by the next pass:
    that hub is not contacted again, and `publish status` does not report them as pending."""
    with Hub() as old:
        old.state.answers = [503] * 1000
        use_hubs(site, old.url, formats=["atom"], opml=["atom"], websub_wait=0.3, websub_retry_delay=0.2)
        site.run("--now", FIXED_NOW)
        assert "7 pending" in site.run("status").output
        use_hubs(site, hub.url)
        time.sleep(0.5)  # the old hub's pings are due again
        told = len(old.state.pings)
        site.write_post("2026-05-01-new.md", post_text(title="New", date="2026-05-01", categories="Research"))
        result = site.run("--now", FIXED_NOW)
        # every feed names its hubs, so every feed changed and the new hub hears of each
        assert "WebSub: 7 ping(s) sent, 0 left for the next pass, 0 given up" in result.output, result.output
        assert len(old.state.pings) == told, "the removed hub was pinged again"
        status = site.run("status").output
        assert "pings 7 sent, 0 pending, 0 given up" in status and old.url not in status, status
        use_hubs(site)
        site.write_post("2026-05-02-new.md", post_text(title="Newer", date="2026-05-02", categories="Research"))
        site.run("--now", FIXED_NOW)
        assert "WebSub" not in site.run("status").output
