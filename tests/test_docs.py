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
    "engines": "engines",
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
    check_site_reads_offline(tmp_path / "site")


def check_site_reads_offline(site: Path) -> None:
    """No page loads a script, a stylesheet or a font from another host, and the math is
    MathML made at build time, with no TeX left for a browser-side renderer."""
    remote = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""")
    pages = sorted(site.rglob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text()
        tags = [m.group(0) for m in remote.finditer(html)]
        # <link rel="canonical"> and the like name a page, they load nothing.
        loading = [t for t in tags if "<link" not in t or "stylesheet" in t or "preconnect" in t]
        assert not loading, f"{page.relative_to(site)} loads from another host: {loading[:3]}"
    math = (site / "concepts" / "polarization-loss" / "index.html").read_text()
    assert 'class="arithmatex"><math' in math
    assert "\\(" not in math and "\\[" not in math  # no TeX left for a renderer


def test_readme_drop_in_snippet_runs_when_pasted():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Drop-in use", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README.md (drop-in snippet)", "exec"), namespace)
    assert namespace["codes"].shape == (8, 64)
    assert set(namespace["codes"].unique().tolist()) <= {-1.0, 1.0}
    grads = [p.grad for p in namespace["model"].parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_math_hook_renders_inline_and_display_tex_as_mathml():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mathml", REPO / "docs_hooks" / "mathml.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    html = (
        '<p><span class="arithmatex">\\(v_k &lt; m\\)</span></p>'
        '<div class="arithmatex">\\[\\sum_{k=1}^{K} x_k\\]</div>'
    )
    from latex2mathml.converter import convert

    out = hook.on_page_content(html, page=None)
    # The TeX between the delimiters, HTML entities decoded, converted inline and as a block.
    assert '<span class="arithmatex">' + convert("v_k < m", display="inline") + "</span>" in out
    assert '<div class="arithmatex">' + convert("\\sum_{k=1}^{K} x_k", display="block") in out
    assert out.count("<math") == 2 and "\\(" not in out and "\\[" not in out
