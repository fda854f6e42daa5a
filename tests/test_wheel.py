"""The program as `pip install .` gives it: a wheel built from the sources, installed into a venv outside the
checkout, run from a folder that is not the checkout. Every subpackage and template must be in the wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.wheel


def _run(args: list, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PUBLISHER_", "PYTHON"))}
    return subprocess.run([str(a) for a in args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built once per session from a copy of the package sources (the checkout stays untouched)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "publisher", src / "publisher", ignore=shutil.ignore_patterns("__pycache__"))
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", src], work, 300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (work / "dist").glob("publisher-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """A venv outside the checkout holding the wheel; its dependencies come from the test environment's
    site-packages (added as a plain path, so the editable checkout is not importable from it)."""
    env_dir = tmp_path_factory.mktemp("venv") / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    proc = _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
                env_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              env_dir).stdout.strip())
    (site_packages / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin"


def test_wheel_holds_every_module_and_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "publisher").rglob("*")
               if p.suffix in (".py", ".j2") and "__pycache__" not in p.parts}
    assert sources, "the package sources are where the test expects them"
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    assert {"publisher/templates/digest.html.j2", "publisher/templates/digest.txt.j2",
            "publisher/templates/web.html.j2"} <= names


def test_installed_program_publishes_previews_and_serves_from_elsewhere(installed, tmp_path):
    site = tmp_path / "blog"
    site.mkdir()
    shutil.copy(REPO / "config.toml", site / "config.toml")
    shutil.copytree(REPO / "posts", site / "posts")
    publish = installed / "publish"

    where = _run([installed / "python", "-c", "import publisher; print(publisher.__file__)"], site)
    assert where.stdout.startswith(str(installed.parent)), f"imported from the checkout: {where.stdout}"
    imports = _run([installed / "python", "-c",
                    "import importlib, pkgutil, publisher\n"
                    "for m in pkgutil.walk_packages(publisher.__path__, 'publisher.'): importlib.import_module(m.name)"],
                   site)
    assert imports.returncode == 0, imports.stderr

    first = _run([publish, "--now", "2026-03-12T20:00"], site)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Published 10 new post(s)" in first.stdout and "9 of them were adopted" in first.stdout
    assert (site / "feeds" / "all.atom.xml").read_bytes().count(b"<entry ") == 10

    added = _run([publish, "subscribers", "add", "reader@example.com", "--name", "読者"], site)
    assert added.returncode == 0, added.stderr
    preview = _run([publish, "digest", "--preview", "prev", "--now", "2026-03-14T12:00"], site)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "Next digest, sent 2026-03-16T08:00+09:00" in preview.stdout
    assert "Generated the secret that signs subscriber links" in preview.stderr
    html = (site / "prev" / "digest.html").read_text(encoding="utf-8")
    assert "データセンターの電力問題" in html and 'class="post-title" style="' in html, "the shipped template"
    assert "GPU不足" not in html, "the adopted back catalogue is not news"
    (eml,) = (site / "prev").glob("*.eml")
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert re.fullmatch(r"<https://news\.example\.jp/unsubscribe/[\w.-]+>", message["List-Unsubscribe"])

    check = _run([publish, "check"], site)
    assert check.returncode == 0 and "12 post(s) checked: 0 error(s)" in check.stdout
    status = _run([publish, "digest", "--status"], site)
    assert status.returncode == 0 and "No digest has been sent yet." in status.stdout


def test_site_templates_override_the_packaged_ones(installed, tmp_path):
    site = tmp_path / "blog"
    site.mkdir()
    shutil.copy(REPO / "config.toml", site / "config.toml")
    shutil.copytree(REPO / "posts", site / "posts")
    (site / "templates").mkdir()
    (site / "templates" / "digest.txt.j2").write_text("OWN TEMPLATE {{ count }}\n{{ unsubscribe_url }}\n")
    publish = installed / "publish"
    assert _run([publish, "--now", "2026-03-12T20:00"], site).returncode == 0
    preview = _run([publish, "digest", "--preview", "prev", "--now", "2026-03-14T12:00"], site)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    own, link = (site / "prev" / "digest.txt").read_text().splitlines()
    assert own == "OWN TEMPLATE 1" and link.startswith("https://news.example.jp/unsubscribe/")
    assert "データセンターの電力問題" in (site / "prev" / "digest.html").read_text(encoding="utf-8"), \
        "the HTML template the site does not have comes from the package"
