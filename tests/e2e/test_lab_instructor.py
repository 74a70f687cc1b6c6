"""The instructor's JupyterLab (`make lab-instructor`): solutions run and render, Validate;
formgrader shows an XSS submission without running any of it, under its CSP, and still grades."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.e2e.helpers import ASSIGNMENTS, OUTPUTS, open_notebook, wait_idle


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_solution_notebook_runs_and_renders_figures(a, notebook_page, instructor_lab, screenshots):
    page = notebook_page
    open_notebook(page, instructor_lab, f"solutions/{a}/{a}.ipynb")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(500)
    wait_idle(page)
    cells = page.evaluate(OUTPUTS)
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{a}: {errors[0]['ename']}: {errors[0]['evalue'][:300]}"
    n_png = sum("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])
    assert n_png >= 2, f"{a}: expected at least two figures, got {n_png}"
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.jp-RenderedImage img')]"
        f".filter(i => i.complete && i.naturalWidth > 0).length >= {n_png}", timeout=30_000)
    sizes = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedImage img')]"
                          ".map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == n_png and all(w > 0 and h > 0 for w, h in sizes)
    shot = screenshots / f"solution-{a}.png"
    page.locator(".jp-RenderedImage img").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    instructor_lab.shutdown_kernels()


@pytest.mark.parametrize("which, expected", [("solutions", "validation-success"),
                                             ("notebooks", "validation-failed")])
def test_instructor_validate_button(which, expected, page, instructor_lab):
    a = ASSIGNMENTS[0]
    open_notebook(page, instructor_lab, f"{which}/{a}/{a}.ipynb")
    page.locator(".validate-button button, button.validate-button").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=120_000)
    page.wait_for_selector(f".jp-Dialog .{expected}", timeout=120_000)
    instructor_lab.shutdown_kernels()


# ----------------------------------------------------------------- formgrader and XSS

# A submission's markdown, raw cells and outputs hold script (tests/fixtures/
# attacks_render.py): shown in formgrader, inside the instructor's session, it
# could set its own grades. Nothing of it may run, and formgrader must still work.

FORMGRADER_READY = ("() => window.formgrader && formgrader.loaded && formgrader.grades.loaded"
                    " && formgrader.comments.loaded")
PWNED = "() => [document.title, window.__pwned || null]"
#: Injected into formgrader's page after the notebook starts (the CSP alone must stop it).
INJECTED = ("<script>window.__pwned = ['csp-script']</script>"
            "<img src=x onerror=\"window.__pwned = ['csp-img']\">"
            "<a id=\"csp-link\" href=\"javascript:window.__pwned = ['csp-link']\">link</a>")



def _watch(page, lab) -> dict[str, list[str]]:
    """Record requests and console messages; a request that would leave the server
    fails at once (and is recorded: the tests assert there is none)."""
    seen: dict[str, list[str]] = {"requests": [], "console": []}
    # Logged in as the instructor (formgrader's own login cookie would be
    # scoped to the page's folder: its scripts' API calls would not carry it).
    page.context.set_extra_http_headers({"Authorization": f"token {lab.token}"})
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.on("console", lambda m: seen["console"].append(m.text))
    page.on("dialog", lambda d: (seen["console"].append(f"dialog: {d.message}"), d.dismiss()))
    page.route(lambda url: not url.startswith(lab.url), lambda route: route.abort())
    return seen


def _open_submission(page, lab, submission_id: str):
    response = page.goto(f"{lab.url}/formgrader/submissions/{submission_id}/")
    page.wait_for_function(FORMGRADER_READY, timeout=30_000)
    page.wait_for_timeout(1000)          # time for any onerror/onload/ontoggle to fire
    return response


def _assert_nothing_ran(page, seen, requests: bool = True) -> None:
    title, pwned = page.evaluate(PWNED)
    assert pwned is None and "PWNED" not in title, (title, pwned)
    assert not requests or [u for u in seen["requests"] if "pwned" in u.lower()] == []
    assert not [m for m in seen["console"] if m.startswith("dialog")]


def _grades(lab, submission_id: str) -> dict[str, dict]:
    return {g["name"]: g for g in lab.api(f"/formgrader/api/grades?submission_id={submission_id}")}


@pytest.mark.parametrize("student", ["attack-xss", "legacy-xss"])
def test_formgrader_runs_no_script_of_a_submission(student, page, xss_lab, xss_course, screenshots):
    """attack-xss as graded now (sanitized when stored) and as stored before
    (sanitized when shown): no payload runs, and the page says what was removed."""
    seen = _watch(page, xss_lab)
    response = _open_submission(page, xss_lab, xss_course["ids"][student])
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp.split("script-src")[1] \
        .split(";")[0], csp
    _assert_nothing_ran(page, seen)
    text = page.inner_text("#notebook-container")
    assert "The factors are -1.2" in text and "[output removed: text/html]" in text
    assert page.locator("a[href^='javascript:' i], iframe, object, embed").count() == 0
    # formgrader's own scripts all ran: none was refused.
    assert not [m for m in seen["console"] if "Content Security Policy" in m], seen["console"]
    # Math is MathML, rendered offline: no MathJax, no request to a CDN or anywhere else.
    assert page.locator("#notebook-container math").count() > 10
    assert [u for u in seen["requests"] if not u.startswith(xss_lab.url)] == []
    shot = screenshots / f"formgrader-{student}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")


def test_formgrader_csp_stops_script_that_reaches_the_page(page, xss_lab, xss_course):
    """Script put into the page after the notebook starts (as a sanitizer miss
    would) is refused by the Content-Security-Policy, and formgrader's own
    scripts (by nonce) still run."""
    seen = _watch(page, xss_lab)

    def inject(route):
        response = route.fetch()
        body = response.text().replace('id="notebook-container">',
                                       'id="notebook-container">' + INJECTED, 1)
        assert INJECTED in body
        route.fulfill(response=response, body=body)

    page.route("**/formgrader/submissions/*/", inject)
    _open_submission(page, xss_lab, xss_course["ids"]["attack-xss"])
    page.click("#csp-link")
    page.wait_for_timeout(500)
    _assert_nothing_ran(page, seen)
    assert any("Content Security Policy" in m for m in seen["console"]), seen["console"]


def _eventually(page, read, want) -> None:
    for _ in range(50):
        if read() == want:
            return
        page.wait_for_timeout(100)
    assert read() == want


def test_formgrader_manual_grading_still_works(page, xss_lab, xss_course):
    """The instructor grades the written answer by hand: type a score and
    leave the field (Escape: 'defocus and save'), click 'Full credit', write
    a comment; each is saved in the gradebook."""
    sid = xss_course["ids"]["attack-xss"]
    seen = _watch(page, xss_lab)
    _open_submission(page, xss_lab, sid)
    score = page.locator("input.score#written_lr_regimes")
    manual = lambda: _grades(xss_lab, sid)["written_lr_regimes"]["manual_score"]  # noqa: E731
    score.fill("1.5")
    score.press("Escape")
    _eventually(page, manual, 1.5)
    page.locator(".nbgrader_cell", has=score).locator("button.full-credit").click()
    page.wait_for_function("() => document.querySelector('#written_lr_regimes').value === '2'")
    _eventually(page, manual, 2.0)
    comment = page.locator("textarea#written_lr_regimes-comment")
    comment.fill("Right factors; say why 0.9 oscillates.")
    comment.press("Escape")
    comments = lambda: {c["name"]: c["manual_comment"] for c in xss_lab.api(  # noqa: E731
        f"/formgrader/api/comments?submission_id={sid}")}.get("written_lr_regimes")
    _eventually(page, comments, "Right factors; say why 0.9 oscillates.")
    # Test cells show their auto score (formgrader's scripts filled them in).
    assert page.locator("input.score#test_gd_step").get_attribute("placeholder") == "2"
    _assert_nothing_ran(page, seen)


def test_formgrader_other_pages_work_under_the_csp(page, xss_lab, xss_course):
    """The gradebook lists the submissions (rows built by formgrader's scripts);
    files of a submission are served sandboxed (no script, own origin)."""
    a = xss_course["assignment"]
    seen = _watch(page, xss_lab)
    response = page.goto(f"{xss_lab.url}/formgrader/gradebook/{a}/{a}")
    assert "script-src 'nonce-" in response.headers["content-security-policy"]
    page.wait_for_function("() => document.querySelectorAll('tbody tr').length >= 2",
                           timeout=30_000)
    sid = xss_course["ids"]["attack-xss"]
    files = page.request.get(f"{xss_lab.url}/formgrader/submissions/{sid}/{a}.ipynb")
    assert files.ok
    policy = files.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src 'none'" in policy, policy
    assert not [m for m in seen["console"] if "Content Security Policy" in m], seen["console"]


@pytest.mark.parametrize("where", ["gradebook/{x}", "manage_students/{x}", "gradebook/{x}/nb"])
def test_formgrader_values_reflected_from_the_url_do_not_run(where, page, xss_lab):
    """formgrader writes names from the URL into its pages unescaped (a link
    in a submission could lead the instructor there): the CSP vouches only
    for the scripts its templates write, so the reflected one is refused."""
    seen = _watch(page, xss_lab)
    script = "</script><script>window.__pwned = ['reflected']</script>"
    url = f"{xss_lab.url}/formgrader/" + where.format(x=quote(script, safe=""))
    page.goto(url)
    page.wait_for_timeout(1000)
    assert script.replace("</script>", "", 1) in page.content()      # it is reflected
    _assert_nothing_ran(page, seen, requests=False)   # formgrader's own API calls name it
    assert any("Content Security Policy" in m for m in seen["console"]), seen["console"]
