"""course.grading.render: nothing a submission wrote runs in the instructor's browser.

Unit tests of the sanitizer (every payload class of tests/fixtures/attacks_render.py,
in markdown, attachments, raw cells, outputs and metadata; what must survive:
markdown, math, PNGs, error outputs, test-cell sources, scores), of its place in
nbgrader's configuration, of formgrader's page as its exporter renders it, and
of the Content-Security-Policy transform. The browser tests are in
tests/e2e/test_lab_instructor.py, the graded class in tests/test_autograde.py.
"""

from __future__ import annotations

import base64
import copy
import json
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from course.grading import render
from course.grading.render import (SanitizeSubmission, content_security_policy, sanitize_markdown,
                           sanitize_notebook, sanitize_output)

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_submissions as ms  # noqa: E402  (first: it merges the attack modules)
import attacks_render as ar  # noqa: E402

PWN = "document.title='PWNED'"

# ----------------------------------------------------------------- markdown

#: Markdown payloads: each renders active content without the sanitizer
#: (through nbconvert's markdown renderer, as formgrader's template does).
MARKDOWN_PAYLOADS = {
    "script": f"<script>{PWN}</script>",
    "script-upper": f"<SCRIPT>{PWN}</SCRIPT>",
    "img-onerror": f'<img src=x onerror="{PWN}">',
    "img-slashes": f"<img/src=x/onerror={PWN}>",
    "iframe": f'<iframe srcdoc="&lt;script&gt;{PWN}&lt;/script&gt;"></iframe>',
    "iframe-js": f'<iframe src="javascript:{PWN}"></iframe>',
    "svg-script": f"<svg><script>{PWN}</script></svg>",
    "svg-onload": f'<svg onload="{PWN}"></svg>',
    "details-ontoggle": f'<details open ontoggle="{PWN}">x</details>',
    "a-javascript": f'<a href="javascript:{PWN}">x</a>',
    "object": '<object data="data:text/html;base64,PHNjcmlwdD4="></object>',
    "embed": '<embed src="data:image/svg+xml;base64,PHN2Zz4=">',
    "meta-refresh": f'<meta http-equiv="refresh" content="0;url=javascript:{PWN}">',
    "base": '<base href="https://evil.example/">',
    "form": f'<form action="javascript:{PWN}"><button>x</button></form>',
    "style": "<style>body { background: url(https://evil.example/x) }</style>",
    "inline-in-text": f'An answer with <img src=x onerror="{PWN}"> inside a sentence.',
    "mermaid": f"```mermaid\n<img src=x onerror=\"{PWN}\">\n```",
    "md-link": f"[x](javascript:{PWN})",
    "md-link-entity": f"[x](&#106;avascript:{PWN})",
    "md-link-entity-colon": f"[x](javascript&#58;{PWN})",
    "md-link-pointy-space": f"[x](< javascript:{PWN}>)",
    "md-link-newline": f"[x](\njavascript:{PWN})",
    "md-image": f"![x](javascript:{PWN})",
    "md-reference": f"[x][r]\n\n[r]: javascript:{PWN}",
    "md-vbscript": "[x](vbscript:msgbox)",
    "md-data": "[x](data:text/html;base64,PHNjcmlwdD4=)",
    "autolink": f"<javascript:{PWN}>",
}
#: Payloads nbconvert's renderer happens to neutralize itself (still sanitized).
HARMLESS_UNSANITIZED = {"md-link-pointy-space", "autolink", "iframe-js", "img-slashes"}


def _render_markdown(text: str) -> str:
    return markdown2html_mistune(text)


@pytest.mark.parametrize("name", sorted(MARKDOWN_PAYLOADS))
def test_markdown_payload_is_neutralised(name):
    payload = MARKDOWN_PAYLOADS[name]
    if name not in HARMLESS_UNSANITIZED:
        assert ar.active_html(_render_markdown(payload)), f"{name} is not a live payload"
    clean = sanitize_markdown(payload)
    assert ar.active_html(_render_markdown(clean)) == []
    assert not re.search(ar.TAG_OPENER, clean)
    assert sanitize_markdown(clean) == clean


@pytest.mark.parametrize("text", [
    "# Title\n\nSome *emphasis*, **bold**, `code`, a [link](https://example.org) and "
    "a [relative one](lesson.ipynb#top).\n\n- a list\n- of items\n\n> a quote\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "The rate converges when $|1 - \\eta L| < 1$, i.e. $0 < \\eta < 2/L$; and x < 1, a <= b.",
    "$$\\sum_{i=1}^n w_i^2$$ and \\begin{align} a &= b \\\\ c &= d \\end{align}",
    "```python\nif a < b:\n    print(a)\n```",
    "![plot](attachment:plot.png) and ![web](https://example.org/a.png) "
    "[mail](mailto:teacher@example.org)",
    "[ref]: https://example.org \"title\"\n\nThe [ref] link. Training data: fine.",
])
def test_harmless_markdown_is_unchanged(text):
    assert sanitize_markdown(text) == text


def test_markup_becomes_visible_text_and_math_keeps_its_meaning():
    assert sanitize_markdown("a <b>bold</b> word") == "a &lt;b>bold&lt;/b> word"
    assert "&lt;b&gt;bold&lt;/b&gt;" in _render_markdown(sanitize_markdown("a <b>bold</b> word"))
    # MathJax renders \lt as <: the formula reads the same.
    assert sanitize_markdown("$a<b$ and $$x<y$$") == "$a\\lt b$ and $$x\\lt y$$"


@pytest.mark.parametrize("target", [
    "/formgrader/gradebook/%3C%2Fscript%3E%3Cscript%3Ex()%3C%2Fscript%3E",
    "gradebook/&lt;script&gt;x()&lt;/script&gt;", "x%22onmouseover=x()"])
def test_links_that_carry_markup_are_removed(target):
    """formgrader writes names from its URLs into its pages unescaped."""
    html = _render_markdown(sanitize_markdown(f"a [link]({target}) and ![i]({target})"))
    assert "<a " not in html and "<img " not in html


def test_a_cell_with_a_script_link_loses_its_links_but_keeps_its_text():
    text = f"See [this](https://example.org) and [that](javascript:{PWN})."
    clean = sanitize_markdown(text)
    html = _render_markdown(clean)
    assert ar.active_html(html) == [] and "javascript:" not in re.findall(r'href="([^"]*)"', html)
    assert "See [this](" in html and "and [that](javascript:" in html


# ----------------------------------------------------------------- outputs

PNG = ar.PNG
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0fake-jpeg").decode()


@pytest.mark.parametrize("mime, value", [
    ("text/html", f'<img src=x onerror="{PWN}">'),
    ("application/javascript", PWN),
    ("image/svg+xml", f"<svg><script>{PWN}</script></svg>"),
    ("text/markdown", f'<img src=x onerror="{PWN}">'),
    ("text/latex", f"$\\href{{javascript:{PWN}}}{{x}}$"),
    ("application/vnd.jupyter.widget-view+json", {"model_id": "abc", "version_major": 2}),
    ("application/x-evil", f"<script>{PWN}</script>"),
    ("application/pdf", "JVBERi0="),
])
def test_active_output_types_are_dropped(mime, value):
    for kind in ("display_data", "execute_result"):
        out = new_output(kind, data={mime: value},
                         **({"execution_count": 3} if kind == "execute_result" else {}))
        clean, removed = sanitize_output(out)
        assert removed == [mime]
        assert clean.data == {"text/plain": f"[output removed: {mime}]"}
        assert clean.output_type == kind
        with_text = new_output(kind, data={mime: value, "text/plain": "<Thing>"})
        clean, _ = sanitize_output(with_text)
        assert clean.data == {"text/plain": "<Thing>"}


def test_images_survive_and_bad_ones_do_not():
    out = new_output("display_data", data={"image/png": PNG, "image/jpeg": JPEG,
                                           "text/plain": "<Figure size 640x480 with 1 Axes>"},
                     metadata={"image/png": {"width": 300, "height": "1 onerror=x"},
                               "needs_background": "light"})
    clean, removed = sanitize_output(out)
    assert removed == [] and clean.data == out.data
    assert clean.metadata == {"image/png": {"width": 300}}
    bad = new_output("display_data", data={"image/png": f'"><script>{PWN}</script>'})
    clean, removed = sanitize_output(bad)
    assert removed == ["image/png"] and "image/png" not in clean.data


def test_errors_and_streams_are_kept_as_they_are():
    error = new_output("error", ename="AssertionError", evalue="<b>wrong</b>",
                       traceback=["\x1b[31mAssertionError\x1b[0m: <b>wrong</b>"])
    stderr = new_output("stream", name="stderr", text="<script>x</script>")
    for out in (error, stderr):
        clean, removed = sanitize_output(out)
        assert clean == out and removed == []


# ----------------------------------------------------------------- cells and metadata

def _notebook() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"},
                                "language_info": {"name": "python",
                                                  "codemirror_mode": {"name": "ipython",
                                                                      "version": 3}},
                                "widgets": ar.WIDGET_STATE, "title": "<script>x</script>"})
    md = new_markdown_cell("![a](attachment:a.svg) ![b](attachment:b.png) ![c](attachment:c.jpg)")
    md.attachments = {"a.svg": {"image/svg+xml": base64.b64encode(ar.SVG.encode()).decode()},
                      "b.png": {"image/png": PNG},
                      "c.jpg": {"image/jpeg": JPEG, "text/html": "<script>x</script>"}}
    raw = new_raw_cell(f"<script>{PWN}</script>")
    code = new_code_cell("display()", metadata={"jupyter": {"source_hidden": True},
                                                 "tags": ["ok", 'x" onmouseover="y'],
                                                 "nbgrader": {"grade": False}})
    code.outputs = [new_output("display_data", data={"text/html": "<b>x</b>"},
                               metadata={"jupyter": {"isolated": True}})]
    nb = new_notebook(cells=[md, raw, code], metadata=nb.metadata)
    nb.cells[2].id = 'bad" onclick="x'         # what a hand-edited file can hold
    return nb


def test_attachments_keep_png_and_jpeg_only():
    nb = _notebook()
    sanitize_notebook(nb)
    att = nb.cells[0].attachments
    assert att["b.png"] == {"image/png": PNG} and att["c.jpg"] == {"image/jpeg": JPEG}
    assert list(att["a.svg"]) == ["image/png"]      # a placeholder: the image link still works


def test_raw_cells_metadata_ids_and_tags_are_neutralised():
    nb = _notebook()
    changes = sanitize_notebook(nb)
    assert "&lt;script>" in nb.cells[1].source and "<" not in nb.cells[1].source
    assert set(nb.metadata) == {"kernelspec", "language_info"}
    assert nb.metadata.language_info.codemirror_mode == {"name": "ipython", "version": 3}
    code = nb.cells[2]
    assert "jupyter" not in code.metadata and code.metadata.tags == ["ok"]
    assert re.fullmatch(r"[\w-]+", code.id)
    assert code.metadata.nbgrader == {"grade": False}
    assert code.outputs[0].metadata == {}
    assert changes["text/html"] == 1 and changes["raw HTML"] == 1
    nbformat.validate(nb)


def test_grade_id_that_is_not_a_token_loses_its_nbgrader_metadata():
    cell = new_markdown_cell("x", metadata={"nbgrader": {"grade": True, "grade_id":
                                                         '"><script>x</script>'}})
    nb = new_notebook(cells=[cell])
    sanitize_notebook(nb)
    assert "nbgrader" not in nb.cells[0].metadata


def test_the_attack_submission_is_clean_and_keeps_what_is_harmless():
    nb = ms.make(ms.L01, ar.KIND)
    baseline = ar.render(ms.make(ms.L01, "correct"))
    assert ar.active_in_notebook(nb) and ar.new_active_html(ar.render(nb), baseline)
    before = copy.deepcopy(nb)
    sanitize_notebook(nb)
    assert ar.active_in_notebook(nb) == []
    assert ar.new_active_html(ar.render(nb), baseline) == []
    text = json.dumps(nb)
    assert ar.ANSWER in text and ar.KEPT_TEXT in text and PNG in text
    for old, new in zip(before.cells, nb.cells):
        if old.cell_type == "code":
            assert new.source == old.source
            assert len(new.outputs) == len(old.outputs)
    again = copy.deepcopy(nb)
    assert sanitize_notebook(again) == {} and again == nb


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("a", sorted(p.name for p in (REPO / "solutions").glob("0*")))
def test_solutions_are_unchanged_but_for_metadata(a):
    """The lessons' own notebooks (markdown, math, figures, outputs) pass as they are."""
    nb = nbformat.read(REPO / "solutions" / a / f"{a}.ipynb", as_version=4)
    before = copy.deepcopy(nb)
    sanitize_notebook(nb)
    for old, new in zip(before.cells, nb.cells, strict=True):
        assert new.source == old.source
        # an explorer's widget view (a model id, useless without the kernel) is the
        # one thing a lesson shows that a stored submission does not keep
        assert [o.get("data") for o in new.get("outputs", [])] == \
            [{k: v for k, v in o["data"].items() if k != WIDGET_VIEW} if "data" in o else None
             for o in old.get("outputs", [])]


def test_scores_are_unaffected():
    """nbgrader's score of every grade cell (errors, stderr, execute_result)
    is the same before and after."""
    from nbgrader.utils import determine_grade, is_grade
    nb = ms.make(ms.L01, ar.KIND)
    cells = ms.cells_by_id(nb)
    cells["test_derivative"].outputs = [new_output("stream", name="stdout", text="ok")]
    cells["test_gd_step"].outputs = [
        new_output("display_data", data={"text/html": "<b>x</b>"}),
        new_output("error", ename="AssertionError", evalue="no", traceback=["no"])]
    cells["test_gradient_descent"].outputs = [new_output("stream", name="stderr", text="warn")]
    cells["test_steps_to_tolerance"].outputs = [
        new_output("execute_result", data={"text/plain": "0.5", "text/html": "<i>0.5</i>"},
                   execution_count=1)]
    before = {c.metadata.nbgrader.grade_id: determine_grade(c) for c in nb.cells if is_grade(c)}
    sanitize_notebook(nb)
    after = {c.metadata.nbgrader.grade_id: determine_grade(c) for c in nb.cells if is_grade(c)}
    assert after == before
    assert before["test_gd_step"][0] == 0 and before["test_steps_to_tolerance"][0] == 0.5


# ----------------------------------------------------------------- configuration

def _course_config():
    from traitlets.config.loader import PyFileConfigLoader
    sys.path.insert(0, str(REPO))
    return PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()


def test_nbgrader_config_runs_the_sanitizer_everywhere():
    from nbgrader.converters import Autograde, GenerateFeedback
    cfg = _course_config()
    autograde = Autograde(config=cfg)
    assert autograde.sanitize_preprocessors[-1] is SanitizeSubmission
    assert autograde.autograde_preprocessors[-1] is SanitizeSubmission
    names = [p.__name__ for p in autograde.autograde_preprocessors]
    assert names.index("SaveAutoGrades") < names.index("SanitizeSubmission")
    feedback = [p.__name__ for p in GenerateFeedback(config=cfg).preprocessors]
    assert feedback.index("SanitizeSubmission") == feedback.index("CSSHTMLHeaderPreprocessor") - 1
    exporter = HTMLExporter(config=cfg)
    assert exporter.sanitize_html is True and SanitizeSubmission in exporter.preprocessors


def _formgrader_page(nb, config) -> str:
    """formgrader's submission page for ``nb``, as its exporter renders it."""
    from nbgrader.server_extensions.formgrader import handlers
    config = copy.deepcopy(config)
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": ms.L01, "notebook_id": ms.L01, "submission_id": "s1",
                 "index": 0, "total": 1, "base_url": "", "student": "st",
                 "last_name": None, "first_name": None, "notebook_path": "x.ipynb"}
    body, _ = HTMLExporter(config=config).from_notebook_node(nb, resources=resources)
    return body


def test_formgrader_page_of_a_raw_attack_notebook_is_clean():
    """A notebook stored before the sanitizer existed is cleaned when
    formgrader shows it (its exporter runs SanitizeSubmission); without the
    course's configuration, the same page runs the payloads."""
    from traitlets.config import Config
    attack, correct = ms.make(ms.L01, ar.KIND), ms.make(ms.L01, "correct")
    plain = _formgrader_page(attack, Config())
    assert ar.new_active_html(plain, _formgrader_page(correct, Config()))
    cfg = _course_config()
    page = _formgrader_page(attack, cfg)
    assert ar.new_active_html(page, _formgrader_page(correct, cfg)) == []
    assert ar.ANSWER in page


# ----------------------------------------------------------------- Content-Security-Policy

def _transform(path: str):
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
    request = HTTPServerRequest(start_line=RequestStartLine("GET", path, "HTTP/1.1"),
                                headers=HTTPHeaders({"Host": "127.0.0.1:8888"}))
    return render._formgrader_transform()(request)


def _serve(path: str, body: bytes, content_type: str = "text/html; charset=UTF-8",
           finishing: bool = True):
    from tornado.httputil import HTTPHeaders
    headers = HTTPHeaders({"Content-Type": content_type, "Content-Length": str(len(body)),
                           "Etag": '"abc"'})
    return _transform(path).transform_first_chunk(200, headers, body, finishing)


#: formgrader's static inline script (from its template) and a page shaped like its own.
TOOLTIP = (b"\n  $('span.glyphicon.name-hidden').tooltip({title: \"Show student name\", placement: "
           b"\"bottom\", trigger: \"hover\"});\n  $('span.glyphicon.name-shown').tooltip({title: "
           b"\"Hide student name\", placement: \"bottom\", trigger: \"hover\"});\n  ")
PAGE = (b"<html><head><script src='/formgrader/static/js/a.js'></script>"
        b'<script type="text/javascript">var a = "1";\nvar base_url = "/x";</script>'
        b"</head><body><script type=\"text/javascript\">" + TOOLTIP + b"</script>"
        b'<div id="notebook-container">'
        b"<script>evil()</script><img src=x onerror=evil()></div></body></html>")
#: What formgrader's templates must never vouch for, even before the notebook.
REFLECTED = [b'<script>var a = "x";evil();//";</script>', b"<script>evil()</script>",
             b"<script src='https://evil.example/x.js'></script>",
             b"<script src='/files/submitted/x/evil.js'></script>",
             b"<script src='/formgrader/static/../../files/evil.js'></script>"]


def test_policy_forbids_inline_script_handlers_and_plugins():
    policy = content_security_policy("N")
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    script = directives["script-src"]
    assert "'nonce-N'" in script and "'unsafe-inline'" not in script
    assert "'self'" not in script and "'unsafe-eval'" not in script
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'self'"
    assert "script-src 'none'" in content_security_policy(None)


def test_submission_page_scripts_before_the_notebook_get_the_nonce():
    status, headers, body = _serve("/formgrader/submissions/abc/", PAGE)
    nonce = re.search(r"'nonce-([^']+)'", headers["Content-Security-Policy"]).group(1)
    head, notebook = body.split(b'id="notebook-container"')
    assert head.count(b"<script") == head.count(f'<script nonce="{nonce}"'.encode()) == 3
    assert TOOLTIP in head
    assert b"nonce" not in notebook
    assert headers["Content-Length"] == str(len(body))
    assert "Etag" not in headers and headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("script", REFLECTED)
def test_scripts_formgrader_did_not_write_get_no_nonce(script):
    """A value reflected into formgrader's page (from the URL, say) that
    becomes a script is not vouched for, even in the page's head."""
    for path in ("/formgrader/submissions/abc/", "/formgrader/gradebook/x"):
        _, headers, body = _serve(path, PAGE.replace(b"</head>", script + b"</head>"))
        assert script in body and body.count(b"nonce=") == 3


def test_formgraders_own_inline_scripts_are_known():
    """The static scripts of the installed formgrader's templates are read
    (the tooltip one above is among them)."""
    import hashlib
    assert hashlib.sha256(TOOLTIP).digest() in render._formgrader_static_scripts()


def test_submission_page_without_the_marker_allows_no_script():
    _, headers, body = _serve("/formgrader/submissions/abc/", PAGE.replace(b"notebook-container",
                                                                           b"other"))
    assert b"nonce" not in body and "script-src 'none'" in headers["Content-Security-Policy"]


def test_other_formgrader_pages_and_files():
    _, headers, body = _serve("/user/t/formgrader/gradebook", PAGE)
    assert body.count(b"nonce=") == 3 and b"<script>evil()" in body
    _, headers, body = _serve("/formgrader/submissions/abc/evil.html", PAGE, finishing=False)
    policy = headers["Content-Security-Policy"]
    assert b"nonce" not in body and "sandbox" in policy and "script-src 'none'" in policy
    _, headers, body = _serve("/formgrader/api/grades", b"[]", "application/json")
    assert "script-src 'none'" in headers["Content-Security-Policy"]
    _, headers, body = _serve("/lab/tree/x", PAGE)
    assert "Content-Security-Policy" not in headers and body == PAGE


def test_make_lab_instructor_enables_the_policy():
    config = json.loads((REPO / "jupyter-config/instructor/jupyter_server_config.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"]["course.grading.render"] is True
    dry = subprocess.run(["make", "-n", "-s", "lab-instructor", "STAMP="], cwd=REPO,
                         capture_output=True, text=True).stdout
    assert "jupyter-config/instructor" in dry and "jupyter lab" in dry


def test_the_lessons_hint_blocks_survive_and_nothing_else_does():
    """A submission's untouched hints are not "sanitized" (no false alarm for the
    instructor); the same tags with attributes, or anything else, are."""
    hint = "<details><summary>Hint 1</summary>\n\nLook at $a<b$.\n</details>"
    assert sanitize_markdown(hint) == hint.replace("$a<b$", "$a\\lt b$")
    for bad in ("<details open ontoggle=alert(1)>x</details>", "<summary onclick=x>s</summary>",
                "<details/><script>alert(1)</script>", "<detailsx>", "<DETAILS onclick=y>"):
        clean = sanitize_markdown(bad)
        assert not re.search(ar.TAG_OPENER, clean), clean
        assert not re.search(r"<(details|summary)[^>]", clean, re.I), clean


def test_mathml_beyond_the_allow_list_counts_as_active():
    """Formulas are MathML now (course.grading.mathml): the detector accepts presentation
    MathML and flags any other element or attribute inside <math>."""
    assert ar.active_html('<math display="block"><mrow><mi>a</mi><mspace width="1em"/></mrow></math>') == []
    found = ar.active_html('<math><mi href="javascript:x">a</mi><maction actiontype="x">b</maction>'
                           '<annotation-xml><p>c</p></annotation-xml></math>')
    assert [f[:2] for f in found if f[0] == "mathml"] == \
        [("mathml", "mi"), ("mathml", "maction"), ("mathml", "annotation-xml"), ("mathml", "p")]
