"""The documentation site builds strictly, and its navigation points at pages that exist."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.recipe_arguments import parse_recipe_main

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


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built once by ``mkdocs build --strict`` (the build itself is a test)."""
    out = tmp_path_factory.mktemp("site") / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out


@pytest.mark.slow
def test_mkdocs_build_strict(site):
    for name, page_name in API_PAGES.items():
        html = (site / "api" / page_name / "index.html").read_text()
        # mkdocstrings rendered the docstrings (an empty ::: block renders no object heading).
        assert "doc-heading" in html, f"API page {name} rendered no object"
    assert (site / "tutorials" / "pml-training-loop" / "index.html").is_file()
    check_site_reads_offline(site)


def markdown_headings(text: str) -> list[str]:
    """The ATX headings (``## Title``) of a Markdown page outside fenced code blocks, as a
    reader sees them: every line that starts with a fence opens or closes one. (The renderer
    closes a fence only on a line of its own, so a fence closed mid-line makes the rest of
    the page code: its headings then do not render as headings.)"""
    headings, inside = [], False
    for line in text.splitlines():
        if re.match(r"\s*(`{3,}|~{3,})", line):
            inside = not inside
        elif not inside and re.match(r"#{1,6} ", line):
            headings.append(line.lstrip("#").strip())
    return headings


def _plain(text: str) -> str:
    """Heading text as words only: no Markdown or HTML markup, entities decoded."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](link) -> text
    text = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("¶", "")
    return re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()


def test_markdown_headings_are_found_outside_fences_only():
    page = "# A\n```bash\n# comment\n``` text after the fence\n## B\n```py\n## C\n```\n"
    assert markdown_headings(page) == ["A", "B"]
    assert markdown_headings("# A\n~~~\n# x\n~~~\n## B `code`\n") == ["A", "B `code`"]


@pytest.mark.slow
def test_every_heading_outside_code_is_a_heading_of_the_built_page(site):
    # A fence closed mid-line (``` text) swallows the rest of the page into a code block:
    # its headings then appear as code, not in the page's table of contents.
    missing = []
    for page in sorted(DOCS.rglob("*.md")):
        rel = page.relative_to(DOCS).with_suffix("")
        built = site / (rel.parent if rel.name == "index" else rel) / "index.html"
        rendered = {
            _plain(m.group(2))
            for m in re.finditer(r"<h([1-6])[^>]*>(.*?)</h\1>", built.read_text(), re.DOTALL)
        }
        missing += [
            f"{rel}.md: {h!r}"
            for h in markdown_headings(page.read_text())
            if _plain(h) not in rendered
        ]
    assert not missing, "headings that did not render as headings:\n" + "\n".join(missing)


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


# ---------------------------------------------------------------- commands in the docs
COMMAND_START = re.compile(
    r"(pml-hashing\s|accelerate\s+launch\s|python\s+(?:-m\s+pml_hashing\.cli\s|recipes/))"
)


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command)`` for every ``pml-hashing``, ``accelerate launch`` and
    ``python recipes/*.py`` command in the docs, the README, the CLI's help and the recipes'
    docstrings: code-block lines (continuations joined) and inline code spans."""
    from pml_hashing.cli import make_parser

    sources = {str(p.relative_to(REPO)): p.read_text() for p in sorted(DOCS.rglob("*.md"))}
    sources["README.md"] = (REPO / "README.md").read_text()
    for recipe in sorted((REPO / "recipes").glob("*.py")):
        sources[str(recipe.relative_to(REPO))] = recipe.read_text().split('"""')[1]
    parser = make_parser()
    helps = [parser.format_help()]
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            helps.append(sub.format_help())
            for inner in getattr(sub, "_subparsers", None) and sub._subparsers._group_actions or []:
                helps += [p.format_help() for p in inner.choices.values()]
    sources["pml-hashing --help"] = "\n".join(helps)
    commands = []
    for where, text in sources.items():
        code, prose, inside = [], [], False
        whole_text_is_code = not where.endswith(".md")  # help text, docstrings
        for line in text.replace("\\\n", " ").splitlines():
            if re.match(r"\s*(`{3,}|~{3,})", line):
                inside = not inside
            elif inside or whole_text_is_code:
                code.append(line)
            else:
                prose += re.findall(r"`([^`\n]+)`", line)
        for line in code + prose:
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"\s*(?:&&|;|\|)\s*", line):
                if COMMAND_START.match(part):
                    commands.append((where, part))
    return commands


def _argv(command: str) -> tuple[str, list[str]] | None:
    """``(program, arguments)`` of a command: ``pml-hashing`` or a ``recipes/*.py`` script
    (after ``accelerate launch``'s own flags); None for ``accelerate launch`` of a script
    outside recipes/, or a command shown as a pattern (``...`` for arguments)."""
    import shlex

    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        return None
    if "..." in tokens or any(t.startswith("<") and t.endswith(">") for t in tokens[:2]):
        return None
    # a shell variable ("$SLURM_ARRAY_TASK_ID") is a value the shell fills in at run time:
    # parse the command with a small integer in its place
    tokens = ["0" if re.fullmatch(r"\$\{?[A-Za-z_]\w*\}?", t) else t for t in tokens]
    if tokens[0] == "pml-hashing":
        return "pml-hashing", tokens[1:]
    if tokens[:3] == ["python", "-m", "pml_hashing.cli"]:
        return "pml-hashing", tokens[3:]
    scripts = [i for i, t in enumerate(tokens) if re.fullmatch(r"recipes/\w+\.py", t)]
    if not scripts:
        return None
    return tokens[scripts[0]], tokens[scripts[0] + 1 :]


def _parse(program: str, argv: list[str]):
    """Parse ``argv`` with the program's real argument parser; returns the namespace or
    config, raises SystemExit on a flag the parser does not know."""
    if program == "pml-hashing":
        from pml_hashing.cli import make_parser

        return make_parser().parse_args(argv)
    if program == "recipes/train.py":
        from pml_hashing.training.config import build_parser

        return build_parser().parse_args(argv)
    # evaluate.py and encode.py build their parser inside main(): stop right after parsing
    return parse_recipe_main(program, argv)


def test_documented_commands_are_found():
    commands = documented_commands()
    programs = {(_argv(c) or ("",))[0] for _, c in commands}
    assert {"pml-hashing", "recipes/train.py", "recipes/evaluate.py"} <= programs
    assert len(commands) > 40


# What a command shown in prose may leave out (a required flag of a partial example), or
# write as a placeholder (--seed S): only these parser errors are let through.
_PARTIAL = re.compile(
    r"the following arguments are required|one of the arguments|expected one argument"
)
_PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*|\S*<[^>]+>\S*")


def test_every_documented_command_parses_with_the_real_parser(capsys):
    bad = []
    for where, command in documented_commands():
        argv = _argv(command)
        if argv is None or "--help" in argv[1] or "-h" in argv[1]:
            continue
        try:
            _parse(*argv)
        except SystemExit:
            message = (capsys.readouterr().err.strip().splitlines() or [""])[-1]
            value = re.search(r"got '([^']*)'|invalid \w+ value: '([^']*)'", message)
            value = value and (value.group(1) or value.group(2))
            if _PARTIAL.search(message) or (value and _PLACEHOLDER.fullmatch(value)):
                continue
            bad.append(f"{where}: {command}\n    {message}")
    assert not bad, "commands the parser refuses:\n" + "\n".join(bad)


def test_run_folders_named_in_commands_are_ones_a_documented_training_run_writes():
    from pml_hashing.training.config import parse_config

    commands = documented_commands()
    written = {"<name>"}
    for _, command in commands:
        argv = _argv(command)
        if argv and argv[0] == "recipes/train.py" and "--help" not in argv[1]:
            try:
                config = parse_config(argv[1])
            except (ValueError, OSError, SystemExit):
                continue  # a pattern (--seed S) or a config needing files: no name to add
            written.add(config.run_name())
    named = {
        (where, m.group(1))
        for where, command in commands
        for m in re.finditer(r"runs/([A-Za-z0-9_.-]+)", command)
        if not m.group(1).endswith((".json", ".jsonl"))
    }
    unknown = sorted(f"{where}: runs/{name}" for where, name in named if name not in written)
    assert not unknown, (
        "run folders that no documented recipes/train.py command writes (it writes "
        f"{sorted(written)}):\n" + "\n".join(unknown)
    )


# ---------------------------------------------------------------- dependencies
def test_dependencies_are_ranges_and_ci_pins_live_in_its_constraints_file():
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for group in project["optional-dependencies"].values()
                 for r in group]  # fmt: skip
    pinned = [str(r) for r in declared if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins replace a user's own builds (torch!): {pinned}"
    pins = {}
    for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            pins[requirement.name.lower()] = next(iter(requirement.specifier)).version
    ci_installs = [Requirement(r) for r in project["dependencies"]] + [
        Requirement(r) for extra in ("dev", "docs") for r in project["optional-dependencies"][extra]
    ]  # .ci/run installs ".[dev,docs]"
    for requirement in ci_installs:
        version = pins.get(requirement.name.lower())
        assert version is not None, f"{requirement.name} has no CI version in .ci/constraints.txt"
        assert requirement.specifier.contains(version), f"CI's {requirement.name}=={version}"
    run = (REPO / ".ci" / "run").read_text()
    assert "PIP_CONSTRAINT" in run and ".ci/constraints.txt" in run
    readme = (REPO / "README.md").read_text()
    assert 'pip install -e ".[dev,docs]" && python -m pytest -q' in run and readme.count(
        'pip install -e ".[dev,docs]" && python -m pytest -q'
    )


def test_math_is_set_in_a_math_font():
    # MathML in the theme's text font does not stretch sums and braces
    css = (DOCS / "stylesheets" / "extra.css").read_text()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", css))
    fonts = [body for selector, body in rules.items() if re.search(r"\bmath\b", selector)]
    assert fonts and re.search(r"font-family:[^;]*\bmath\b", fonts[0]), rules
    assert "extra.css" in str(mkdocs_config()["extra_css"])
