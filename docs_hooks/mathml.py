"""mkdocs hook: render the math of every page to MathML at build time.

pymdownx.arithmatex (``generic: true``) wraps each formula in ``<span class="arithmatex">``
(inline, ``\\( ... \\)``) or ``<div class="arithmatex">`` (display, ``\\[ ... \\]``);
latex2mathml turns the TeX into MathML, which browsers render natively. The site then
needs no JavaScript renderer and no CDN, so it reads the same offline.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.DOTALL)
DELIMITERS = {"\\(": "\\)", "\\[": "\\]", "$$": "$$", "$": "$"}


def _tex(source: str) -> str:
    tex = html.unescape(source).strip()
    for left, right in DELIMITERS.items():
        if tex.startswith(left) and tex.endswith(right) and len(tex) >= len(left) + len(right):
            return tex[len(left) : len(tex) - len(right)].strip()
    return tex


def _render(match: re.Match, page_name: str) -> str:
    tag, source = match.group(1), match.group(2)
    tex = _tex(source)
    try:
        mathml = convert(tex, display="block" if tag == "div" else "inline")
    except Exception as error:  # a strict build should stop on TeX it cannot render
        raise ValueError(f"{page_name}: cannot render the formula {tex!r}: {error}") from error
    return f'<{tag} class="arithmatex">{mathml}</{tag}>'


def on_page_content(html_text: str, page, **kwargs) -> str:
    name = getattr(getattr(page, "file", None), "src_path", "a page")
    return MATH.sub(lambda match: _render(match, name), html_text)
