"""The README's nginx and Caddy snippets, run as written against real servers: media types, compression,
conditional GET that keeps answering 304 across passes that change nothing, and the redirect of a renamed
category's feed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from .conftest import FIXED_NOW, REPO, post_text
from .servers import free_port

TYPES = {"all.atom.xml": "application/atom+xml", "all.rss.xml": "application/rss+xml",
         "all.json": "application/feed+json", "index.opml": "text/x-opml",
         "category/chips.atom.xml": "application/atom+xml", "category/chips.json": "application/feed+json"}


def readme_block(lang: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(rf"```{lang}\n(.*?)```", text, re.S) if "application/feed+json" in b]
    assert len(blocks) == 1, f"one {lang} block serving the feeds in the README"
    return blocks[0]


def nginx_config(root: Path, port: int, work: Path) -> str:
    temp = work / "tmp"
    temp.mkdir()
    paths = " ".join(f"{kind}_temp_path {temp};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nmaster_process off;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\nevents {{}}\n"
            f"http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n  {paths}\n"
            f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n{readme_block('nginx')}\n  }}\n}}\n")


def caddy_config(root: Path, port: int, work: Path) -> str:
    block = readme_block("caddy").replace("news.example.jp {", f"http://127.0.0.1:{port} {{", 1)
    block = block.replace("/srv/blog/www", str(root))
    return f"{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {work}/data\n}}\n{block}"


def start(kind: str, root: Path, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = work / ("nginx.conf" if kind == "nginx" else "Caddyfile")
    if kind == "nginx":
        config.write_text(nginx_config(root, port, work))
        cmd = [shutil.which("nginx"), "-c", str(config), "-p", str(work)]
    else:
        config.write_text(caddy_config(root, port, work))
        cmd = [shutil.which("caddy"), "run", "--config", str(config), "--adapter", "caddyfile"]
    env = dict(os.environ, HOME=str(work), XDG_DATA_HOME=str(work / "data"), XDG_CONFIG_HOME=str(work / "cfg"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=(work / "stderr").open("w"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}/feeds/"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{kind} did not start: {(work / 'stderr').read_text()}")


@pytest.mark.parametrize("kind", ["nginx", "caddy"])
def test_readme_snippet_serves_feeds_with_types_compression_and_conditional_get(site, tmp_path, kind):
    if not shutil.which(kind):
        pytest.skip(f"{kind} is not installed (CI installs it)")
    if kind == "nginx" and not Path("/etc/nginx/mime.types").exists():
        pytest.skip("nginx without /etc/nginx/mime.types")
    site.run("--now", FIXED_NOW)
    work = tmp_path / kind
    work.mkdir()
    proc, base = start(kind, site.root, work)
    try:
        with httpx.Client(headers={"Accept-Encoding": "gzip"}, timeout=10) as client:
            tags = {}
            for rel, media_type in TYPES.items():
                resp = client.get(base + rel)
                assert resp.status_code == 200, (rel, resp.status_code)
                assert resp.headers["content-type"].split(";")[0] == media_type, rel
                assert "charset=utf-8" in resp.headers["content-type"], rel
                assert resp.headers.get("content-encoding") == "gzip", rel
                assert resp.content == (site.feeds / rel).read_bytes(), rel
                assert "max-age=300" in resp.headers["cache-control"]
                tags[rel] = (resp.headers["etag"], resp.headers["last-modified"])
                for header, value in (("If-None-Match", tags[rel][0]), ("If-Modified-Since", tags[rel][1])):
                    assert client.get(base + rel, headers={header: value}).status_code == 304, (rel, header)
            # WebSub discovery by header, as the Recommendation asks of the server: a hub, and the feed's own
            # public URL (the self link inside it), percent-encoding and all.
            for rel in ("all.atom.xml", "category/chips.json", f"category/{quote('政策')}.rss.xml"):
                links = client.get(base + rel).links
                assert links["self"]["url"] == "https://news.example.jp/feeds/" + rel, (rel, links)
                assert links["hub"]["url"].startswith("https://"), (rel, links)
            # A pass that changes nothing keeps every validator: readers keep getting 304.
            site.write_post("held.md", post_text(title="Later", date="2030-01-01"))
            site.run("--now", FIXED_NOW)
            for rel, (etag, _) in tags.items():
                assert client.get(base + rel, headers={"If-None-Match": etag}).status_code == 304, rel
            # A new post changes the site's feeds: the old validator no longer matches.
            site.write_post("new.md", post_text(title="New", date="2026-05-01", categories="半導体"))
            site.run("--now", FIXED_NOW)
            fresh = client.get(base + "all.atom.xml", headers={"If-None-Match": tags["all.atom.xml"][0]})
            assert fresh.status_code == 200 and b"<title>New</title>" in fresh.content
            # The renamed category of the snippet: its old files redirect to the new ones.
            site.run("--now", FIXED_NOW, "feeds", "rename-slug", "research", "research-notes")
            for suffix in (".atom.xml", ".rss.xml", ".json"):
                moved = client.get(base + "category/research" + suffix)
                assert moved.status_code == 301
                assert moved.headers["location"].endswith("/feeds/category/research-notes" + suffix)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
