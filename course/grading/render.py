"""What a submission wrote, made safe to show the instructor.

A submitted notebook is shown as HTML to the instructor (formgrader, inside
their Jupyter session) and to the student (feedback). Anything in it that a
browser could run would run with the instructor's rights: set grades through
``/formgrader/api``, write files through ``/api/contents``. Two layers stop it:

* :class:`SanitizeSubmission`, an nbconvert preprocessor that course.grading.nbgrader_plugin
  runs before the autograded notebook is stored, before feedback is exported,
  and in formgrader's own HTML export (so notebooks graded before it existed
  are cleaned when shown). Allow-list rules, in :func:`sanitize_notebook`:

  - markdown keeps its text, markdown syntax and math, but no raw HTML: every
    ``<`` that could open a tag, comment or autolink becomes ``&lt;`` (``\\lt``
    inside ``$...$`` math, which renders the same); a cell with a link whose
    target is not http(s), mailto, attachment or relative, or holds markup
    (even percent-encoded), loses all its links and images (``[`` and ``]``
    escaped); attachments keep image/png and
    image/jpeg only;
  - raw cells are shown as escaped text;
  - outputs keep text/plain, image/png and image/jpeg (valid base64 only),
    streams and errors; every other MIME type (HTML, JavaScript, SVG, markdown,
    LaTeX, widgets, ...) is dropped, and an output left empty says what was
    removed. Outputs are never removed or reordered, error outputs and
    sources of code cells never changed, so grading is unaffected;
  - metadata is reduced to what nbgrader and the renderers need (no widget
    state, no ``jupyter`` key); cell ids, tags and execution counts that
    could break out of an HTML attribute are replaced.

* :func:`_load_jupyter_server_extension`: a Jupyter server extension (enabled
  by ``jupyter-config/instructor``, which ``make lab-instructor`` uses) that
  serves every ``/formgrader`` page with a Content-Security-Policy allowing
  only the scripts formgrader's templates write (a nonce added to its static
  files, its known inline scripts and its ``var x = "...";`` blocks; never to
  a script in the notebook's part of the page, nor to one reflected from the
  URL, which formgrader's templates do not escape), no inline event handlers
  but formgrader's own three, no ``javascript:`` URLs, no plugins; files of a
  submission served by formgrader are sandboxed (no script at all).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import pathlib
import re
import secrets
import urllib.parse
from typing import Any

from nbconvert.preprocessors import Preprocessor
from nbformat.notebooknode import NotebookNode
from traitlets import Bool

from course.grading.mathml import FORMGRADER_MATHJAX, without_mathjax

#: MIME types an output keeps (anything else is dropped).
OUTPUT_MIME = ("text/plain", "image/png", "image/jpeg")
#: MIME types a markdown cell's attachment keeps.
ATTACHMENT_MIME = ("image/png", "image/jpeg")
#: URL schemes a markdown link or image may use (no scheme: relative, allowed).
SAFE_SCHEMES = {"http", "https", "mailto", "attachment"}
#: Cell metadata keys kept (nbgrader's, and the harmless ones Jupyter writes).
CELL_METADATA = {"nbgrader", "tags", "deletable", "editable", "collapsed", "scrolled",
                 "trusted", "execution"}

#: A tag opener, except the four attribute-free tags of the lessons' collapsed hints
#: (``<details><summary>Hint</summary> ... </details>``): they cannot carry a script.
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])(?!/?(?:details|summary)>)")
_MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)
_LINK_TARGET = re.compile(r"\]\s*[(:]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_SAFE_WORD = re.compile(r"[^<>&\"'`\x00-\x1f]{0,100}")
# 1x1 transparent PNG: stands in for an attachment whose type was removed (a
# markdown image naming a missing attachment stops nbconvert's export).
_PLACEHOLDER_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
                    "60e6kgAAAABJRU5ErkJggg==")


# ----------------------------------------------------------------- markdown

def _decoded(text: str) -> str:
    """``text`` with entities decoded (repeatedly) and backslashes removed,
    as a renderer and then a browser would read a URL in it."""
    for _ in range(3):
        text = html.unescape(text)
    return text.replace("\\", "")


def _unsafe_url(start: str) -> bool:
    """True if the link target at the start of ``start`` has a scheme that
    is not allowed (after the decoding a renderer and a browser apply), or
    carries markup (formgrader writes some URL parts into its pages as they
    are: such a link leads the instructor to script)."""
    url = _decoded(start).lstrip("".join(map(chr, range(33)))).removeprefix("<")
    url = re.sub(r"[\t\n\r]", "", url).lstrip("".join(map(chr, range(33))))
    m = _SCHEME.match(url)
    if m and m.group(1).lower() not in SAFE_SCHEMES:
        return True
    target = re.split(r"[\s)>]", url, maxsplit=1)[0]
    return bool(re.search(r"[<>\"']", urllib.parse.unquote(target)))


def _has_unsafe_link(text: str) -> bool:
    squashed = re.sub(r"[\x00-\x20\x7f]", "", _decoded(text)).lower()
    if "javascript:" in squashed or "vbscript:" in squashed:
        return True
    return any(_unsafe_url(text[m.end():m.end() + 500]) for m in _LINK_TARGET.finditer(text))


def sanitize_markdown(text: str) -> str:
    """Markdown without raw HTML or script links (see the module's docstring).

    Safe whatever a renderer takes for math or code: outside what looks like
    math a tag opener becomes ``&lt;``, inside it ``\\lt`` (both render no tag).
    Idempotent.
    """
    if _has_unsafe_link(text):
        # No links or images at all (entities are not markdown syntax).
        return (text.replace("<", "&lt;").replace("[", "&#91;").replace("]", "&#93;"))
    out, pos = [], 0
    for m in _MATH.finditer(text):
        out.append(_TAG_START.sub("&lt;", text[pos:m.start()]))
        out.append(_TAG_START.sub(r"\\lt ", m.group()))
        pos = m.end()
    out.append(_TAG_START.sub("&lt;", text[pos:]))
    return "".join(out)


def _base64_ok(data: Any) -> bool:
    if not isinstance(data, str) or not _BASE64.fullmatch(data):
        return False
    try:
        base64.b64decode("".join(data.split()), validate=True)
    except ValueError:
        return False
    return True


def _sanitize_attachments(attachments: Any) -> dict:
    out = {}
    if not isinstance(attachments, dict):
        return out
    for name, bundle in attachments.items():
        kept = {m: d for m, d in (bundle.items() if isinstance(bundle, dict) else ())
                if m in ATTACHMENT_MIME and _base64_ok(d)}
        out[str(name)] = NotebookNode(kept or {"image/png": _PLACEHOLDER_PNG})
    return out


# ----------------------------------------------------------------- outputs

def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else str(value)


def _image_metadata(metadata: Any, kept: dict) -> NotebookNode:
    out = NotebookNode()
    if not isinstance(metadata, dict):
        return out
    for mime in kept:
        meta = metadata.get(mime)
        if mime.startswith("image/") and isinstance(meta, dict):
            size = {k: int(v) for k, v in meta.items()
                    if k in ("width", "height") and isinstance(v, (int, float))
                    and not isinstance(v, bool) and 0 <= v < 100_000}
            if size:
                out[mime] = NotebookNode(size)
    return out


def sanitize_output(output: NotebookNode) -> tuple[NotebookNode, list[str]]:
    """The output with only safe content, and the MIME types removed.

    Streams and errors keep their text (stderr and errors are what nbgrader
    scores); rich outputs keep :data:`OUTPUT_MIME`; an output left with
    nothing gets a text/plain note instead (it is never removed).
    """
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return NotebookNode(output_type="stream", name=name,
                            text=_text(output.get("text", ""))), []
    if kind == "error":
        tb = output.get("traceback", [])
        return NotebookNode(output_type="error", ename=_text(output.get("ename", "")),
                            evalue=_text(output.get("evalue", "")),
                            traceback=[_text(t) for t in (tb if isinstance(tb, list) else [tb])]
                            ), []
    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    kept, removed = {}, []
    for mime, value in data.items():
        if mime == "text/plain" and isinstance(value, (str, list)):
            kept[mime] = _text(value)
        elif mime in ("image/png", "image/jpeg") and _base64_ok(_text(value)):
            kept[mime] = _text(value)
        else:
            removed.append(str(mime))
    if not kept:
        kept["text/plain"] = f"[output removed: {', '.join(removed) or 'no displayable data'}]"
    clean = NotebookNode(output_type=kind if kind in ("execute_result", "display_data")
                         else "display_data",
                         data=NotebookNode(kept), metadata=_image_metadata(output.get("metadata"),
                                                                           kept))
    if clean.output_type == "execute_result":
        count = output.get("execution_count")
        clean.execution_count = count if isinstance(count, int) and not isinstance(count, bool) \
            else None
    if kind not in ("execute_result", "display_data"):
        removed.append(f"output_type {kind!s}")
    return clean, removed


# ----------------------------------------------------------------- notebook

def _clean_cell_metadata(metadata: Any) -> NotebookNode:
    meta = NotebookNode({k: v for k, v in (metadata or {}).items() if k in CELL_METADATA})
    grade_id = meta.get("nbgrader", {}).get("grade_id") if isinstance(meta.get("nbgrader"), dict) \
        else None
    if "nbgrader" in meta and grade_id is not None and not (
            isinstance(grade_id, str) and _SAFE_TOKEN.fullmatch(grade_id)):
        # formgrader writes grade_id into HTML attributes; the course's are tokens.
        del meta["nbgrader"]
    if "tags" in meta:
        tags = meta.tags if isinstance(meta.tags, list) else []
        meta.tags = [t for t in tags if isinstance(t, str) and _SAFE_TOKEN.fullmatch(t)]
    return meta


def _clean_nb_metadata(metadata: Any) -> NotebookNode:
    out = NotebookNode()
    metadata = metadata if isinstance(metadata, dict) else {}
    for key in ("kernelspec", "language_info"):
        value = metadata.get(key)
        if isinstance(value, dict):
            out[key] = NotebookNode({k: v for k, v in value.items()
                                     if isinstance(k, str) and _safe_scalar(v)})
            mode = value.get("codemirror_mode")
            if isinstance(mode, dict):
                out[key]["codemirror_mode"] = NotebookNode(
                    {k: v for k, v in mode.items() if isinstance(k, str) and _safe_scalar(v)})
    if "kernelspec" in out:      # nbformat requires both
        out.kernelspec.setdefault("name", "python3")
        out.kernelspec.setdefault("display_name", out.kernelspec.name)
    return out


def _safe_scalar(value: Any) -> bool:
    return (isinstance(value, str) and bool(_SAFE_WORD.fullmatch(value))) or \
        (isinstance(value, int) and not isinstance(value, bool))


def sanitize_notebook(nb: NotebookNode) -> dict[str, int]:
    """Make ``nb`` safe to render, in place; return what was changed, by kind."""
    from nbformat.corpus.words import generate_corpus_id
    changes: dict[str, int] = {}

    def count(kind: str, n: int = 1) -> None:
        if n:
            changes[kind] = changes.get(kind, 0) + n

    metadata = _clean_nb_metadata(nb.get("metadata"))
    count("notebook metadata", len(set(nb.get("metadata", {})) - set(metadata)))
    nb.metadata = metadata
    for cell in nb.cells:
        cid = cell.get("id")
        if cid is not None and not (isinstance(cid, str) and _SAFE_TOKEN.fullmatch(cid)):
            cell.id = generate_corpus_id()
            count("cell id")
        meta = _clean_cell_metadata(cell.get("metadata"))
        count("cell metadata", len(set(cell.get("metadata", {})) - set(meta)))
        cell.metadata = meta
        if cell.cell_type == "markdown":
            source = _text(cell.get("source", ""))
            clean = sanitize_markdown(source)
            count("markdown HTML", clean != source)
            cell.source = clean
            if "attachments" in cell:
                before = cell.attachments
                cell.attachments = _sanitize_attachments(before)
                count("attachment", cell.attachments != before)
        elif cell.cell_type == "raw":
            # Exported as is into HTML (with no or an HTML mime type): no tags.
            source = _text(cell.get("source", ""))
            clean = source.replace("<", "&lt;")
            count("raw HTML", clean != source)
            cell.source = clean
            cell.pop("attachments", None)
        elif cell.cell_type == "code":
            outputs = []
            for output in cell.get("outputs", []):
                clean, removed = sanitize_output(output)
                for mime in removed:
                    count(mime)
                outputs.append(clean)
            cell.outputs = outputs
            count_ = cell.get("execution_count")
            if not (count_ is None or (isinstance(count_, int) and not isinstance(count_, bool))):
                cell.execution_count = None
    return changes


class SanitizeSubmission(Preprocessor):
    """Remove everything a browser could run from a submitted notebook
    (:func:`sanitize_notebook`); runs on any notebook, nbgrader's or not."""

    enabled = Bool(True, help="Sanitize notebooks before they are stored or shown.").tag(
        config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        changes = sanitize_notebook(nb)
        if changes:
            who = (resources or {}).get("nbgrader", {}).get("student", "")
            content = set(changes) - {"cell metadata", "notebook metadata"}
            self.log.log(logging.WARNING if content else logging.DEBUG, "sanitized %s: %s",
                         who or "notebook",
                         ", ".join(f"{k} x{n}" for k, n in sorted(changes.items())))
        return nb, resources


# ----------------------------------------------------------------- CSP for formgrader

#: formgrader's own inline event handlers (allowed by hash, with 'unsafe-hashes').
FORMGRADER_HANDLERS = ("toggle_name(true);", "toggle_name(false);", "toggleAllNames()")
#: In formgrader's submission page, the notebook starts after this.
NOTEBOOK_MARKER = b'id="notebook-container"'
_FORMGRADER = re.compile(r"/formgrader(/|$)")
_SUBMISSION_PAGE = re.compile(r"/formgrader/submissions/[^/]+/?$")
_SUBMISSION_FILE = re.compile(r"/formgrader/submissions/[^/]+/.")
_SCRIPT = re.compile(rb"<script(?=[\s>])([^>]*)>(.*?)</script\s*>", re.I | re.S)
_SRC = re.compile(rb"""\bsrc\s*=\s*["']?([^"'\s>]+)""", re.I)
#: Scripts formgrader's templates load: its own static files (under any base
#: URL). Not MathJax: its math is MathML (course.grading.mathml), its loader removed.
_TRUSTED_SRC = re.compile(rb"(/[\w.~%-]+)*/formgrader/static/[\w./-]+")
#: formgrader's inline scripts that hold template values: only ``var x = "...";``
#: lines whose values cannot leave their string (a reflected value can).
_VARIABLES = re.compile(rb'\s*(var [A-Za-z_]\w* = "[^"\\<>\n]*";\s*)+')


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(nonce: str | None, sandbox: bool = False) -> str:
    """The policy of a formgrader response: scripts only with ``nonce``
    (none at all without one), formgrader's inline handlers by hash."""
    scripts = " ".join([f"'nonce-{nonce}'" if nonce else "'none'"]
                       + (["'unsafe-hashes'"] + [_sha256(h) for h in FORMGRADER_HANDLERS]
                          if nonce else []))
    policy = [
        "default-src 'self'",
        f"script-src {scripts}",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
    if sandbox:
        policy.append("sandbox")
    return "; ".join(policy)


_static_scripts: set[bytes] = set()


def _formgrader_static_scripts() -> set[bytes]:
    """SHA-256 of every inline script of formgrader's templates that holds no
    template value (read once from the installed nbgrader)."""
    if not _static_scripts:
        from nbgrader.server_extensions.formgrader import handlers
        folder = pathlib.Path(handlers.template_path)
        for path in [*folder.glob("*.tpl"), *folder.glob("*/*.j2"), *folder.glob("*.j2")]:
            for attrs, body in _SCRIPT.findall(path.read_bytes()):
                if not _SRC.search(attrs) and b"{{" not in body and b"{%" not in body:
                    _static_scripts.add(hashlib.sha256(body).digest())
        _static_scripts.add(hashlib.sha256(FORMGRADER_MATHJAX.encode()).digest())
    return _static_scripts


def _trusted_script(attrs: bytes, body: bytes) -> bool:
    src = _SRC.search(attrs)
    if src:
        return bool(_TRUSTED_SRC.fullmatch(src.group(1))) and b".." not in src.group(1)
    return bool(_VARIABLES.fullmatch(body)) or \
        hashlib.sha256(body).digest() in _formgrader_static_scripts()


def _add_nonce(page: bytes, nonce: str, end: int) -> bytes:
    """Add ``nonce`` to the script tags of ``page[:end]`` that formgrader's
    templates write (:func:`_trusted_script`); any other script (a value
    reflected from the URL, say) gets none and is refused."""
    def tag(m: re.Match) -> bytes:
        if m.end() > end or not _trusted_script(m.group(1), m.group(2)):
            return m.group(0)
        return b'<script nonce="' + nonce.encode() + b'"' + m.group(0)[len(b"<script"):]
    return _SCRIPT.sub(tag, page)


def _formgrader_transform():
    from tornado.web import OutputTransform

    class FormgraderCSP(OutputTransform):
        """Content-Security-Policy for every response under /formgrader."""

        def __init__(self, request):
            super().__init__(request)
            path = request.path
            self.active = bool(_FORMGRADER.search(path))
            self.submission_page = bool(_SUBMISSION_PAGE.search(path))
            self.submission_file = bool(_SUBMISSION_FILE.search(path)) and \
                not self.submission_page

        def transform_first_chunk(self, status_code, headers, chunk, finishing):
            if not self.active:
                return status_code, headers, chunk
            nonce = None
            html_page = headers.get("Content-Type", "").startswith("text/html")
            encoded = headers.get("Content-Encoding", "identity") != "identity"
            if html_page and finishing and not encoded and not self.submission_file:
                # formgrader's own page, whole: its scripts get the nonce; in a
                # submission page only those before the notebook (none if the
                # marker is missing: fail closed).
                # Math is MathML already: no MathJax (no CDN), a stand-in for formgrader.
                chunk = without_mathjax(chunk.decode("utf-8", "surrogateescape"),
                                        f"<script>{FORMGRADER_MATHJAX}</script>").encode(
                    "utf-8", "surrogateescape")
                if "Content-Length" in headers:
                    headers["Content-Length"] = str(len(chunk))
                end = len(chunk)
                if self.submission_page:
                    found = chunk.find(NOTEBOOK_MARKER)
                    end = found if found >= 0 else 0
                if end:
                    nonce = secrets.token_urlsafe(18)
                    chunk = _add_nonce(chunk, nonce, end)
                    if "Content-Length" in headers:
                        headers["Content-Length"] = str(len(chunk))
                # A cached copy would carry a stale nonce.
                headers.pop("Etag", None)
                headers["Cache-Control"] = "no-store"
            headers["Content-Security-Policy"] = content_security_policy(
                nonce, sandbox=self.submission_file)
            return status_code, headers, chunk

    return FormgraderCSP


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "course.grading.render"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Serve formgrader's pages with :func:`content_security_policy`."""
    transforms = serverapp.web_app.transforms
    transform = _formgrader_transform()
    # First, so it sees the page before any compression.
    transforms.insert(0, transform)
    serverapp.log.info("course.grading.render: Content-Security-Policy on /formgrader")


load_jupyter_server_extension = _load_jupyter_server_extension


# ----------------------------------------------------------------- nbgrader configuration

def configure_rendering(c: Any) -> None:
    """Register :class:`SanitizeSubmission` in nbgrader's config object ``c``
    (called at the end of course.grading.nbgrader_plugin.configure):

    * last of ``Autograde.sanitize_preprocessors`` and of
      ``Autograde.autograde_preprocessors`` (after ``SaveAutoGrades``: scores
      are computed on the notebook as it ran; the stored notebook is clean);
    * in ``GenerateFeedback.preprocessors``, before the HTML header;
    * in every ``HTMLExporter`` of nbgrader (feedback, and formgrader's page),
      with nbconvert's ``sanitize_html`` on as well.
    """
    c.Autograde.sanitize_preprocessors.append(SanitizeSubmission)
    c.Autograde.autograde_preprocessors.append(SanitizeSubmission)
    feedback = c.GenerateFeedback.preprocessors
    names = [getattr(p, "__name__", str(p)) for p in feedback] if isinstance(feedback, list) else []
    if "CSSHTMLHeaderPreprocessor" in names:
        feedback.insert(names.index("CSSHTMLHeaderPreprocessor"), SanitizeSubmission)
    else:
        feedback.append(SanitizeSubmission)
    c.HTMLExporter.sanitize_html = True
    c.HTMLExporter.preprocessors.append(SanitizeSubmission)
    # Math as MathML, written with the page: no MathJax, no CDN (course.grading.mathml).
    c.HTMLExporter.filters = {
        "strip_files_prefix": "course.grading.mathml.strip_files_prefix_with_math"}
    from course.grading.mathml import feedback_exporter
    c.GenerateFeedback.exporter_class = feedback_exporter()
