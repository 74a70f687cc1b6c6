"""Math in feedback and formgrader as MathML (course/grading/mathml.py): offline, no script."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import nbformat
import pytest

from course.grading.mathml import (ELEMENTS, FORMGRADER_MATHJAX, _clean, math_to_mathml,
                                   tex_to_mathml, without_mathjax)
from tests.conftest import ROOT

LESSONS = sorted(p for p in (ROOT / "solutions").glob("[0-9][0-9]-*/[0-9][0-9]-*.ipynb"))
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$([^$]+?)\$", re.S)


def test_inline_display_and_environments_become_mathml():
    out = math_to_mathml("<p>step $w - \\eta g$ then</p>\n<p>$$\\frac{1}{\\sqrt{K}} &lt; 1$$</p>"
                         "<p>\\begin{aligned} a &amp;= b \\\\ c &amp;= d \\end{aligned}</p>")
    assert out.count("<math") == 3
    assert '<math display="inline"><mrow><mi>w</mi><mo>−</mo><mi>η</mi>' in out
    assert '<math display="block"><mrow><mfrac>' in out and "<mo>&lt;</mo>" in out
    assert "<mtable" in out and "$" not in out


def test_code_stays_verbatim_and_an_escaped_dollar_is_no_math():
    text = '<pre>x = "$a$"</pre> <code>$b$</code> <div class="highlight"><pre>$c$</pre></div> 5\\$ and 6\\$'
    assert math_to_mathml(text) == text


def test_tex_that_cannot_be_converted_stays_as_text():
    assert tex_to_mathml("\\frac{1}{", display=False) is None
    assert math_to_mathml("<p>$\\frac{1}{$</p>") == "<p>$\\frac{1}{$</p>"


def test_only_allow_listed_mathml_survives():
    evil = ET.fromstring('<math xmlns="http://www.w3.org/1998/Math/MathML"><mi href="javascript:x" '
                         'onclick="y()" style="background:url(//evil)" mathvariant="bold">a</mi></math>')
    assert ET.tostring(_clean(evil), encoding="unicode") == '<math><mi mathvariant="bold">a</mi></math>'
    with pytest.raises(ValueError):
        _clean(ET.fromstring("<math><mi>a</mi><script>x()</script></math>"))
    for tex in ("\\href{javascript:alert(1)}{x}", "\\text{&lt;script&gt;x&lt;/script&gt;}",
                "\\style{background:url(//evil)}{x}"):
        out = math_to_mathml(f"<p>${tex}$</p>")
        tags = set(re.findall(r"<(\w+)", out)) - {"p"}
        assert tags <= ELEMENTS and "href" not in out and "style" not in out \
            and "<script" not in out, out


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.parent.name[:2])
def test_every_formula_of_the_lessons_converts(path):
    nb = nbformat.read(path, as_version=4)
    formulas = [m.group(1) or m.group(2) for c in nb.cells if c.cell_type == "markdown"
                for m in MATH.finditer(c.source)]
    assert formulas
    failed = [f for f in formulas if tex_to_mathml(f, display=False) is None]
    assert failed == []


def test_the_mathjax_loader_is_removed():
    page = ('<head><!-- Load mathjax -->\n<script src="https://cdnjs.cloudflare.com/x.js"> </script>'
            '<script type="text/x-mathjax-config">init()</script>\n'
            '<!-- End of mathjax configuration --><title>t</title></head>')
    assert without_mathjax(page) == "<head><title>t</title></head>"
    assert without_mathjax(page, f"<script>{FORMGRADER_MATHJAX}</script>") == \
        f"<head><script>{FORMGRADER_MATHJAX}</script><title>t</title></head>"
