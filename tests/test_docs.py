"""The documentation site builds strictly, and its navigation points at pages that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# mkdocs turns a page named index.md into its folder's landing page, so the page of
# pml_hashing.index is api/indexes.md.
API_PAGES = {  # subpackage -> page name under docs/api/
    "losses": "losses",
    "miners": "miners",
    "regularizers": "regularizers",
    "distances": "distances",
    "index": "indexes",
    "evaluation": "evaluation",
    "codes": "codes",
    "models": "models",
    "methods": "methods",
    "data": "data",
    "training": "training",
}


class _PermissiveLoader(yaml.SafeLoader):
    """mkdocs.yml may hold ``!!python/name:`` tags; the nav does not need them resolved."""


_PermissiveLoader.add_multi_constructor("", lambda loader, suffix, node: None)


def mkdocs_config() -> dict:
    return yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_PermissiveLoader)


def nav_pages(nav) -> list[str]:
    """Every page path of a mkdocs nav (nested lists of {title: path-or-list})."""
    pages = []
    for entry in nav:
        items = entry.values() if isinstance(entry, dict) else [entry]
        for item in items:
            if isinstance(item, list):
                pages += nav_pages(item)
            elif not re.match(r"^[a-z]+://", item):
                pages.append(item)
    return pages


def test_every_nav_page_exists():
    pages = nav_pages(mkdocs_config()["nav"])
    assert pages, "mkdocs.yml has an empty nav"
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"pages in the nav but not under docs/: {missing}"
    assert len(pages) == len(set(pages)), "a page appears twice in the nav"


def test_every_page_is_in_the_nav():
    pages = set(nav_pages(mkdocs_config()["nav"]))
    orphans = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    orphans = [p for p in orphans if p not in pages]
    assert not orphans, f"pages under docs/ that the nav does not list: {orphans}"


def test_results_page_is_in_the_nav():
    nav = mkdocs_config()["nav"]
    assert {"Results": "results.md"} in nav


def test_api_reference_covers_every_subpackage():
    for name, page_name in API_PAGES.items():
        page = DOCS / "api" / f"{page_name}.md"
        assert page.is_file(), f"missing API page {page}"
        assert f"::: pml_hashing.{name}" in page.read_text()


def test_getting_started_has_the_readme_commands_verbatim():
    readme = (REPO / "README.md").read_text()
    page = (DOCS / "getting-started.md").read_text()
    for command in (
        "pip install -e . && accelerate launch recipes/train.py",
        'pip install -e ".[dev,docs]" && python -m pytest -q',
    ):
        assert command in readme, f"README no longer says {command!r}"
        assert command in page, f"getting-started.md does not say {command!r}"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name, page_name in API_PAGES.items():
        html = (tmp_path / "site" / "api" / page_name / "index.html").read_text()
        # mkdocstrings rendered the docstrings (an empty ::: block renders no object heading).
        assert "doc-heading" in html, f"API page {name} rendered no object"
    assert (tmp_path / "site" / "tutorials" / "pml-training-loop" / "index.html").is_file()
