"""Math in feedback and formgrader, rendered without a CDN and without a script.

nbconvert leaves the LaTeX of markdown cells (``$...$``, ``$$...$$``,
``\\begin{aligned}...``) as text for MathJax, which its HTML templates load from a
CDN: offline, the learner's feedback shows TeX source. Here the LaTeX is turned
into MathML when the HTML is written (latex2mathml), which every current browser
renders natively (MathML Core: Chromium 109+, Firefox, Safari), so a feedback file
shows its formulas anywhere, offline, from a file or an LMS, with no script at all.

:func:`strip_files_prefix_with_math` replaces nbconvert's ``strip_files_prefix``
filter in every ``HTMLExporter`` of nbgrader (feedback and formgrader), whose
templates apply it last to a markdown cell's HTML; raw HTML in a submission's
markdown was escaped before (course.grading.render). The MathML is rebuilt from an
allow-list of MathML Core elements and presentation attributes (no ``href``, no
``style``, no event handler), so math from a submission cannot carry markup.
:func:`without_mathjax` drops the MathJax loader nbconvert's templates write.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from nbconvert.filters.strings import strip_files_prefix

#: MathML Core's elements (what latex2mathml writes is a subset).
ELEMENTS = frozenset("""math mi mn mo ms mspace mtext mrow mfrac msqrt mroot mstyle merror
    mpadded mphantom msub msup msubsup munder mover munderover mmultiscripts mprescripts
    none mtable mtr mtd semantics annotation menclose""".split())
#: Presentation attributes; nothing that links, styles or runs.
ATTRIBUTES = frozenset("""display mathvariant displaystyle scriptlevel stretchy fence
    separator lspace rspace minsize maxsize largeop movablelimits symmetric accent
    accentunder linethickness columnalign rowalign columnspacing rowspacing columnlines
    rowlines frame width height depth notation voffset encoding""".split())

_TAG = re.compile(r"(<[^>]*>)")
_VERBATIM = ("pre", "code", "script", "style", "textarea")
_MATH = re.compile(
    r"\$\$(?P<display>.+?)\$\$"
    r"|\\\[(?P<bracket>.+?)\\\]"
    r"|(?P<env>\\begin\{(?P<name>[A-Za-z]+\*?)\}.+?\\end\{(?P=name)\})"
    r"|\\\((?P<paren>.+?)\\\)"
    r"|(?<![\\$])\$(?P<inline>[^$]+?)(?<!\\)\$",
    re.S)
_ALIGNED = re.compile(r"\\(begin|end)\{aligned\}")
_MATHJAX = re.compile(r"\s*<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->",
                      re.S)


def _clean(element: ET.Element) -> ET.Element:
    tag = element.tag.rsplit("}", 1)[-1]
    if tag not in ELEMENTS:
        raise ValueError(f"MathML element {tag!r} not allowed")
    out = ET.Element(tag, {k: v for k, v in element.attrib.items() if k in ATTRIBUTES})
    out.text = element.text
    for child in element:
        cleaned = _clean(child)
        cleaned.tail = child.tail
        out.append(cleaned)
    return out


def tex_to_mathml(tex: str, display: bool) -> str | None:
    """MathML for ``tex`` (allow-listed), or ``None`` when it cannot be converted."""
    from latex2mathml.converter import convert
    # latex2mathml knows align* but not aligned (the same rows, inside math).
    tex = _ALIGNED.sub(r"\\\1{align*}", tex)
    try:
        tree = ET.fromstring(convert(tex, display="block" if display else "inline"))
        math = _clean(tree)
    except Exception:  # noqa: BLE001 - any failure: the TeX stays as text
        return None
    math.set("display", "block" if display else "inline")
    return ET.tostring(math, encoding="unicode", short_empty_elements=True)


def _convert(match: re.Match) -> str:
    groups = match.groupdict()
    for key, display in (("display", True), ("bracket", True), ("env", True),
                         ("paren", False), ("inline", False)):
        if groups[key] is not None:
            mathml = tex_to_mathml(html.unescape(groups[key]).strip(), display)
            return mathml if mathml is not None else match.group(0)
    return match.group(0)


def math_to_mathml(fragment: str) -> str:
    """``fragment`` (sanitised HTML) with the LaTeX of its text turned into MathML;
    text inside ``pre``, ``code``, ``script``, ``style`` and ``textarea`` is left as is."""
    parts = _TAG.split(fragment)
    depth = 0
    for i, part in enumerate(parts):
        if i % 2:                         # a tag
            name = part.strip("</>").split()[0].lower() if part.strip("</> ") else ""
            if name in _VERBATIM and not part.endswith("/>"):
                depth += -1 if part.startswith("</") else 1
                depth = max(depth, 0)
        elif depth == 0 and ("$" in part or "\\" in part):
            parts[i] = _MATH.sub(_convert, part)
    return "".join(parts)


def strip_files_prefix_with_math(text: str) -> str:
    """nbconvert's ``strip_files_prefix`` filter, then :func:`math_to_mathml`: the last
    filter nbgrader's feedback and formgrade templates apply to a markdown cell's HTML
    (after ``markdown2html``, which leaves the TeX as text)."""
    return math_to_mathml(strip_files_prefix(text))


#: What formgrader's own script needs of MathJax (formgrade.js waits for its "End"
#: signal before it focuses the first cell): stands in for the loader in its pages.
FORMGRADER_MATHJAX = ("window.MathJax = {Hub: {Queue: function () {}, Config: function () {}, "
                      "Startup: {signal: {Interest: function (f) { f(\"End\"); }}}}};")


def without_mathjax(page: str, replacement: str = "") -> str:
    """``page`` without the MathJax loader and configuration of nbconvert's templates
    (``replacement`` in its place)."""
    return _MATHJAX.sub(lambda m: replacement, page, count=1)


def feedback_exporter():
    """nbconvert's HTMLExporter whose pages carry no MathJax loader (for
    ``GenerateFeedback.exporter_class``; math is MathML by then)."""
    from nbconvert.exporters import HTMLExporter

    class FeedbackHTMLExporter(HTMLExporter):
        def from_notebook_node(self, nb, resources=None, **kw):
            output, resources = super().from_notebook_node(nb, resources, **kw)
            return without_mathjax(output), resources

    return FeedbackHTMLExporter
