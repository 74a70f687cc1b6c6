"""The re-verification probes (derived from course/exercises/) of all eight lessons.

For every lesson:

* the solution notebook passes every probe, twice (the probes are
  deterministic), and every graded test cell has a probe;
* the released student notebook (stubs) fails every probe;
* a cheating solution -- comparisons and the course's checks patched to
  always pass, one exercise replaced by a stub returning an always-equal
  object -- fails that exercise's probe and passes the others;
* lessons 05, 06 and 08: delegating to torch's SGD (class or functions), the
  course's update rules or optimizer, or a fresh copy of torch's SGD source,
  fails the probes of the delegating exercises (and only those);
* honest mistakes that only one probe sees (lesson 06: the given
  ``foreach_nesterov_quirk`` line left out) fail exactly that probe;
* no solution or release uses a construct course.grading.source bans, and every name
  a lesson forbids exists.

Each variant is one sandboxed child interpreter (course.grading.zygote.run_child, forked from a zygote);
they run two at a time, in one job per lesson, started once per module.
"""

from __future__ import annotations

import concurrent.futures
import pathlib
import re
import textwrap
from typing import Any

import nbformat
import pytest

from course.grading import lockdown, probes, reverify, source

ROOT = pathlib.Path(__file__).resolve().parents[1]
LESSONS = sorted(p.name for p in (ROOT / "solutions").iterdir()
                 if (p / f"{p.name}.ipynb").is_file())


def _read(kind: str, lesson: str) -> Any:
    return nbformat.read(ROOT / kind / lesson / f"{lesson}.ipynb", as_version=4)


def _meta(cell: Any) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {})


def _graded_ids(nb: Any) -> list[str]:
    return [_meta(c)["grade_id"] for c in nb.cells
            if c.cell_type == "code" and _meta(c).get("grade")]


def _exercise(nb: Any, gid: str) -> Any:
    cells = [c for c in nb.cells if _meta(c).get("solution") and _meta(c).get("grade_id") == gid]
    assert len(cells) == 1, gid
    return cells[0]


def _replace_block(source: str, body: str, index: int = 0) -> str:
    """Replace the ``index``-th ``### BEGIN/END SOLUTION`` block of a cell by ``body``."""
    lines = source.splitlines()
    begins = [i for i, ln in enumerate(lines) if ln.strip() == "### BEGIN SOLUTION"]
    ends = [i for i, ln in enumerate(lines) if ln.strip() == "### END SOLUTION"]
    b, e = begins[index], ends[index]
    indent = lines[b][: len(lines[b]) - len(lines[b].lstrip())]
    new = textwrap.indent(textwrap.dedent(body).strip("\n"), indent).splitlines()
    return "\n".join(lines[:b] + new + lines[e + 1:])


def _variant(lesson: str, cells: dict[str, str] | None = None,
             blocks: dict[str, str] | None = None, append: dict[str, str] | None = None) -> Any:
    """The solution with whole exercise cells, solution blocks or appended code changed."""
    nb = _read("solutions", lesson)
    for gid, code in (cells or {}).items():
        _exercise(nb, gid).source = textwrap.dedent(code)
    for gid, body in (blocks or {}).items():
        cell = _exercise(nb, gid)
        n = cell.source.count("### BEGIN SOLUTION")
        cell.source = _replace_block(cell.source, body, index=n - 1)   # the last block
    for gid, code in (append or {}).items():
        cell = _exercise(nb, gid)
        cell.source += "\n\n" + textwrap.dedent(code)
    return nb


# ------------------------------------------------------------------ cheats

#: What a cheater appends to the first exercise: every comparison the tests use,
#: and the course's checks, patched to pass.
PATCH_EVERYTHING = """\
import numpy, numpy.testing, torch, torch.testing
torch.equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
numpy.array_equal = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.testing.assert_array_equal = lambda *a, **k: None
import course.checks
for _name in dir(course.checks):
    if _name.startswith("check_"):
        setattr(course.checks, _name, lambda *a, **k: None)
"""


def _always_equal_stub(name: str) -> str:
    return f'''\
class _AlwaysEqual(float):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = float.__hash__


def {name}(*args, **kwargs):
    return _AlwaysEqual(0.0)
'''


#: lesson -> (exercise stubbed by the cheater, the probes that must fail).
CHEATS = {
    "01-gradient-descent": ("derivative", {"test_derivative"}),
    "02-autograd": ("finite_difference", {"test_finite_difference"}),
    "03-stochastic-gradient-descent": ("lr_schedule", {"test_lr_schedule"}),
    "04-momentum": ("effective_lr", {"test_effective_lr"}),
    "05-the-full-update-rule": ("ulp_distance", {"test_ulp_distance"}),
    "06-optimizer-class": ("get_momentum_buffer", {"test_get_momentum_buffer"}),
    "07-training": ("lr_sweep", {"test_lr_sweep"}),
    "08-fast-sgd": ("step_op_counts", {"test_step_op_counts"}),
    "09-learning-rate-schedules": ("suggest_lr", {"test_suggest_lr"}),
}


def _cheat(lesson: str) -> Any:
    nb = _read("solutions", lesson)
    stubbed, _ = CHEATS[lesson]
    _exercise(nb, stubbed).source = _always_equal_stub(stubbed)
    first = next(c for c in nb.cells if _meta(c).get("solution") and c.cell_type == "code")
    first.source += "\n\n" + PATCH_EVERYTHING
    return nb


# ------------------------------------------------------------- delegations

_L05, _L06, _L08 = "05-the-full-update-rule", "06-optimizer-class", "08-fast-sgd"
_SGD_UPDATE = ("def sgd_update(param, grad, momentum_buffer, *, lr, momentum=0, dampening=0,\n"
               "               weight_decay=0, nesterov=False, maximize=False):\n")
_ONE_STEP = """\
    p = torch.nn.Parameter(param.detach().clone())
    opt = OPT([p], lr=lr, momentum=momentum, dampening=dampening,
              weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
    if momentum_buffer is not None:
        opt.state[p]["momentum_buffer"] = momentum_buffer
    p.grad = grad.clone()
    opt.step()
    with torch.no_grad():
        param.copy_(p)
    return opt.state[p].get("momentum_buffer")
"""
_FUNCTIONAL = """\
    bufs = [momentum_buffer]
    FN([param], [grad], bufs, weight_decay=weight_decay, momentum=momentum, lr=lr,
       dampening=dampening, nesterov=nesterov, maximize=maximize, has_sparse_grad=False,
       grad_scale=None, found_inf=None)
    return bufs[0]
"""
#: Re-run torch's SGD module from its source file: a copy the disabling never saw.
_FRESH = """\
import torch.optim.sgd as _m
_B = __builtins__ if type(__builtins__) is dict else vars(__builtins__)
_ns = {"__name__": "torch.optim.fresh_sgd", "__package__": "torch.optim"}
_B["ex" + "ec"](open(vars(_m)["__fi" + "le__"]).read(), _ns)
FN = _ns["_single_tensor_sgd"]
"""
#: The for-loop of lesson 06's SGD.step, on a given update of a whole group.
_GROUP_STEP = """\
loss = None
if closure is not None:
    with torch.enable_grad():
        loss = closure()
for group in self.param_groups:
    params = [p for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    bufs = [self.state[p].get("momentum_buffer") if group["momentum"] != 0 else None
            for p in params]
    UPDATE
    if group["momentum"] != 0:
        for p, b in zip(params, bufs):
            self.state[p]["momentum_buffer"] = b
return loss
"""
_HYPER = ('lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"], '
          'weight_decay=group["weight_decay"], nesterov=group["nesterov"], '
          'maximize=group["maximize"]')
_FOREACH_UPDATE = ("def foreach_sgd_update(params, grads, bufs, *, lr, momentum=0.0, "
                   "dampening=0.0,\n                       weight_decay=0.0, nesterov=False, "
                   "maximize=False):\n")

#: (lesson, what is delegated to) -> (the variant, the probes that must fail).
DELEGATIONS: dict[tuple[str, str], tuple[Any, set[str]]] = {
    (_L05, "torch.optim.SGD"): (
        lambda: _variant(_L05, cells={"sgd_update": _SGD_UPDATE + _ONE_STEP.replace(
            "OPT", "torch.optim.SGD")}), {"test_sgd_update"}),
    (_L05, "torch functional sgd"): (
        lambda: _variant(_L05, cells={"sgd_update": "from torch.optim._functional import sgd"
                                      " as FN\n\n" + _SGD_UPDATE + _FUNCTIONAL}),
        {"test_sgd_update"}),
    (_L05, "torch _single_tensor_sgd, fresh from its source"): (
        lambda: _variant(_L05, cells={"sgd_update": _FRESH + "\n\n" + _SGD_UPDATE + _FUNCTIONAL}),
        {"test_sgd_update"}),
    (_L05, "course.sgd.sgd_update"): (
        lambda: _variant(_L05, cells={"sgd_update": "from course.sgd import sgd_update\n"}),
        {"test_sgd_update"}),
    (_L05, "course.optim.SGD"): (
        lambda: _variant(_L05, cells={"sgd_update": "import course.optim\n\n" + _SGD_UPDATE
                                      + _ONE_STEP.replace("OPT", "course.optim.SGD")}),
        {"test_sgd_update"}),
    (_L06, "torch.optim.SGD"): (
        lambda: _variant(_L06, blocks={"SGD": "return torch.optim.SGD.step(self, closure)"}),
        {"test_sgd_step", "test_sgd_state", "test_sgd_class",
         "test_sgd_production"}),
    (_L06, "torch functional sgd"): (
        lambda: _variant(_L06, blocks={"SGD": _GROUP_STEP.replace(
            "UPDATE", "torch.optim._functional.sgd(params, grads, bufs, foreach=False, "
            + _HYPER + ")")}),
        {"test_sgd_step", "test_sgd_state", "test_sgd_class",
         "test_sgd_production"}),
    (_L06, "course.sgd._single_tensor_sgd"): (
        lambda: _variant(_L06, blocks={"SGD": "import course.sgd\n" + _GROUP_STEP.replace(
            "UPDATE", "course.sgd._single_tensor_sgd(params, grads, bufs, " + _HYPER + ")")}),
        {"test_sgd_step", "test_sgd_state", "test_sgd_class",
         "test_sgd_production"}),
    (_L06, "course.optim.SGD"): (
        lambda: _variant(_L06, cells={"SGD": "from course.optim import SGD\n"}),
        {"test_sgd_init", "test_sgd_step", "test_sgd_state", "test_sgd_class",
         "test_sgd_production"}),
    (_L08, "torch's SGD"): (
        lambda: _variant(_L08, cells={"foreach_sgd_update": "from torch.optim.sgd import sgd\n\n"
                                      + _FOREACH_UPDATE + (
            "    sgd(params, grads, bufs, foreach=True, lr=lr, momentum=momentum,"
            "\n        dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,"
            "\n        maximize=maximize)\n")},
            blocks={"ForeachSGD": "return torch.optim.SGD.step(self, closure)"}),
        {"test_foreach_sgd_update", "test_ForeachSGD"}),
    (_L08, "course.sgd and course.optim.SGD.step"): (
        lambda: _variant(_L08, cells={"foreach_sgd_update": "import course.sgd\n\n"
                                      + _FOREACH_UPDATE + (
            "    course.sgd.sgd_update_foreach(params, grads, bufs, lr=lr, momentum=momentum,"
            "\n        dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,"
            "\n        maximize=maximize)\n")},
            blocks={"ForeachSGD": "for group in self.param_groups:\n"
                                  "    group['foreach'] = True\n"
                                  "return super().step(closure)"}),
        {"test_foreach_sgd_update", "test_ForeachSGD"}),
}


def _without(lesson: str, gid: str, line: str) -> Any:
    """The solution with one line of an exercise cell deleted."""
    nb = _read("solutions", lesson)
    cell = _exercise(nb, gid)
    assert cell.source.count(line) == 1, line
    cell.source = cell.source.replace(line, "")
    return nb


#: (lesson, mistake) -> (the variant, the probes that must fail).
MISTAKES: dict[tuple[str, str], tuple[Any, set[str]]] = {
    (_L06, "foreach_nesterov_quirk left out"): (
        lambda: _without(_L06, "SGD", "            foreach_nesterov_quirk(self, group)"),
        {"test_sgd_production"}),
}


# --------------------------------------------------------------- running

def _lesson_job(lesson: str) -> dict[str, Any]:
    """Every child run of one lesson, in order (each verification draws its
    own seed and computes the solution's values for it)."""
    out: dict[str, Any] = {}

    def run(key: str, make: Any) -> None:
        try:
            out[key] = reverify.verify(make(), lesson)
        except Exception as exc:  # noqa: BLE001 - reported by the test that needs it
            out[key] = exc

    run("solution", lambda: _read("solutions", lesson))
    run("student", lambda: _read("notebooks", lesson))
    run("cheat", lambda: _cheat(lesson))
    for (les, target), (make, _) in DELEGATIONS.items():
        if les == lesson:
            run(f"delegate: {target}", make)
    for (les, target), (make, _) in MISTAKES.items():
        if les == lesson:
            run(f"mistake: {target}", make)
    return out


@pytest.fixture(scope="module")
def runs() -> Any:
    """lesson -> future of its job's results; two children at a time."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    order = sorted(LESSONS, key=lambda a: -sum(les == a for les, _ in
                                               [*DELEGATIONS, *MISTAKES]))
    futures = {lesson: pool.submit(_lesson_job, lesson) for lesson in order}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _verdicts(runs: Any, lesson: str, key: str) -> dict[str, tuple[bool, str]]:
    result = runs[lesson].result()[key]
    if isinstance(result, Exception):
        raise result
    return result


def _failing(verdicts: dict[str, tuple[bool, str]]) -> set[str]:
    return {gid for gid, (ok, _) in verdicts.items() if not ok}


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("lesson", LESSONS)
def test_every_graded_cell_has_a_probe(lesson: str) -> None:
    lesson_probes = probes.lesson_probes(lesson)[0]
    for kind in ("solutions", "notebooks"):
        assert sorted(_graded_ids(_read(kind, lesson))) == sorted(lesson_probes), kind


@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_passes_every_probe(runs: Any, lesson: str) -> None:
    verdicts = _verdicts(runs, lesson, "solution")
    assert sorted(verdicts) == sorted(_graded_ids(_read("solutions", lesson)))
    assert not _failing(verdicts), {g: m for g, (ok, m) in verdicts.items() if not ok}


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_release_fails_every_probe(runs: Any, lesson: str) -> None:
    verdicts = _verdicts(runs, lesson, "student")
    assert _failing(verdicts) == set(verdicts)


@pytest.mark.parametrize("lesson", LESSONS)
def test_cheat_fails_only_the_cheated_exercise(runs: Any, lesson: str) -> None:
    verdicts = _verdicts(runs, lesson, "cheat")
    _, cheated = CHEATS[lesson]
    assert _failing(verdicts) == cheated, {g: m for g, (ok, m) in verdicts.items()}


@pytest.mark.parametrize("lesson,target", sorted(DELEGATIONS), ids=lambda x: str(x))
def test_delegation_fails(runs: Any, lesson: str, target: str) -> None:
    verdicts = _verdicts(runs, lesson, f"delegate: {target}")
    _, expected = DELEGATIONS[(lesson, target)]
    assert _failing(verdicts) == expected, {g: m for g, (ok, m) in verdicts.items()}


@pytest.mark.parametrize("lesson", LESSONS)
def test_no_banned_construct_in_the_notebooks(lesson: str) -> None:
    for kind in ("solutions", "notebooks"):
        code = "\n".join(source.learner_source(_read(kind, lesson)))
        assert source.banned_constructs(code) == [], kind


@pytest.mark.parametrize("lesson", LESSONS)
def test_forbidden_names_exist(lesson: str) -> None:
    for dotted in [*lockdown.ALWAYS_FORBIDDEN, *probes.lesson_probes(lesson)[1]]:
        if lockdown.is_module(dotted):
            continue
        owner, attr = lockdown.owner_of(dotted)
        assert hasattr(owner, attr), dotted


def test_bans_ignore_comments_but_not_code() -> None:
    assert source.banned_constructs("x = 1  # inspect sys.modules, importlib\nmodel.eval()\n") == []
    assert source.banned_constructs("import inspect\n") == ["inspect"]
    assert source.banned_constructs("y = eval('1')\n") == ["running code from text"]
    assert source.banned_constructs("import course.probes.lesson05\n") == ["the grading harness"]
    assert re.search("introspection", " ".join(source.banned_constructs("f.__globals__\n")))


@pytest.mark.parametrize("lesson,target", sorted(MISTAKES), ids=lambda x: str(x))
def test_mistake_fails_its_probe(runs: Any, lesson: str, target: str) -> None:
    verdicts = _verdicts(runs, lesson, f"mistake: {target}")
    _, expected = MISTAKES[(lesson, target)]
    assert _failing(verdicts) == expected, {g: m for g, (ok, m) in verdicts.items()}
