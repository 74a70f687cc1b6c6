"""Tests of the lesson 05 checks beyond tests/test_exercises.py (which runs
every catalogued mistake of course/exercises/lesson05.py): learner-style wrong
implementations that are not catalogue mistakes, the checks' behaviour, and
the mutant library of :mod:`course.exercises.sgd_mistakes`.

The wrong implementations below are written the way a learner would write
them, so these tests also show that the catalogue recognises real code.
"""

from __future__ import annotations


import pytest
import torch
import torch.optim._functional
import torch.optim.sgd as torch_sgd

import course.optim
import course.sgd
from course.checks import (
    CheckFailure,
    check_decayed_gradient,
    check_nesterov_direction,
    check_sgd_update,
    check_ulp_distance,
)
from course.exercises import lesson05
from course.exercises.sgd_mistakes import (
    BEHAVIOUR_MISTAKES,
    MISTAKES,
    ROUNDING,
    VALUE_MISTAKES,
    diagnosis,
)
from course.floating_point import fma_in_use
from tests.check_contract import fails, not_implemented

needs_fma = pytest.mark.skipif(not fma_in_use(),
                               reason="natural arithmetic is bit-exact without FMA")


# --------------------------------------------------------------------------
# Reference solutions (as in the solution notebook)
# --------------------------------------------------------------------------

def nesterov_direction(g, buf, momentum):
    return g.add(buf, alpha=momentum)


def decayed_gradient(grad, param, weight_decay, maximize):
    g = -grad if maximize else grad
    if weight_decay != 0:
        g = g.add(param, alpha=weight_decay)
    return g


def ulp_distance(a, b):
    int_dtype = torch.int32 if a.dtype == torch.float32 else torch.int64
    lowest = torch.iinfo(int_dtype).min

    def key(x):
        k = x.view(int_dtype).to(torch.int64)
        return torch.where(k < 0, lowest - k, k)
    return (key(a) - key(b)).abs()


def sgd_update(param, grad, momentum_buffer, *, lr, momentum=0, dampening=0,
               weight_decay=0, nesterov=False, maximize=False):
    g = decayed_gradient(grad, param, weight_decay, maximize)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = g.clone()
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = nesterov_direction(g, buf, momentum) if nesterov else buf
    param.add_(g, alpha=-lr)
    return buf


# --------------------------------------------------------------------------
# 5.1 nesterov_direction
# --------------------------------------------------------------------------

# The catalogued mistakes (course/exercises/lesson05.py) are tested by
# tests/test_exercises.py; below, learner-style variants that are not them.

@pytest.mark.parametrize("wrong, pattern", [
    # swapped, written with torch's fused add (float32 bits differ from the
    # catalogued buf + β·g: named through the rounding-tolerant match)
    (lambda g, b, m: b.add(g, alpha=m), r"swapped the roles"),
])
def test_nesterov_direction_mistakes(wrong, pattern):
    fails(check_nesterov_direction, wrong, r"expected .* got .*Diagnosis: .*" + pattern)


def test_nesterov_direction_in_place():
    fails(check_nesterov_direction, lambda g, b, m: g.add_(b, alpha=m),
          r"changed its input `g` in place")
    fails(check_nesterov_direction, lambda g, b, m: b.mul_(m).add_(g),
          r"changed its input `buf` in place")


def test_nesterov_direction_wrong_type_and_dtype():
    fails(check_nesterov_direction, lambda g, b, m: (g + m * b).tolist(),
          r"expected a torch.Tensor, got list")
    fails(check_nesterov_direction, lambda g, b, m: (g + m * b).double()
          if g.dtype == torch.float32 else g + m * b, r"dtype torch.float64")


@needs_fma
def test_nesterov_direction_natural_math_passes_but_says_rounding(capsys):
    check_nesterov_direction(lambda g, b, m: g + m * b)
    assert "to rounding" in capsys.readouterr().out


# --------------------------------------------------------------------------
# 5.2 decayed_gradient
# --------------------------------------------------------------------------

def test_decayed_gradient_in_place():
    def neg_in_place(grad, param, weight_decay, maximize):
        g = grad.neg_() if maximize else grad
        return g.add(param, alpha=weight_decay)

    def add_in_place(grad, param, weight_decay, maximize):
        g = -grad if maximize else grad
        return g.add_(param, alpha=weight_decay)

    def decoupled(grad, param, weight_decay, maximize):
        param.mul_(1 - weight_decay)
        return -grad if maximize else grad.clone()
    fails(check_decayed_gradient, neg_in_place, r"changed `grad` in place")
    fails(check_decayed_gradient, add_in_place, r"changed `grad` in place")
    fails(check_decayed_gradient, decoupled, r"changed `param` in place.*DECOUPLED")


# --------------------------------------------------------------------------
# 5.3 ulp_distance
# --------------------------------------------------------------------------

def _bits(x):
    return x.view(torch.int32 if x.dtype == torch.float32 else torch.int64).to(torch.int64)


def test_ulp_distance_mistakes():
    # signs taken from the raw bits (not the keys): only some distances negative
    fails(check_ulp_distance, lambda a, b: ulp_distance(b, a) * torch.where(
        _bits(a) < _bits(b), -1, 1), r"negative: return the absolute value")
    fails(check_ulp_distance, lambda a, b: (a - b).abs() / torch.finfo(a.dtype).eps,
          r"dtype torch.float32, expected torch.int64")
    fails(check_ulp_distance, lambda a, b: int(ulp_distance(a, b).max()),
          r"expected an int64 tensor.*got int")
    fails(check_ulp_distance, lambda a, b: ulp_distance(a, b).sum(),
          r"the result has shape \(\), expected \(4,\)")


# --------------------------------------------------------------------------
# 5.4 sgd_update: learner-style wrong implementations, one per mistake
# --------------------------------------------------------------------------
# Like the solution notebook's sgd_update they call the learner's own
# decayed_gradient and nesterov_direction; a mistake outside the momentum
# buffer keeps that part right with momentum_part.

def momentum_part(g, momentum_buffer, momentum, dampening, nesterov):
    """The right momentum part of sgd_update: (the direction d, the new buffer)."""
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = g.clone()
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = nesterov_direction(g, buf, momentum) if nesterov else buf
    return g, buf


def dampening_on_first_step(param, grad, momentum_buffer, *, lr, momentum=0,
                            dampening=0, weight_decay=0, nesterov=False,
                            maximize=False):
    g = decayed_gradient(grad, param, weight_decay, maximize)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = g.mul(1 - dampening)
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = nesterov_direction(g, buf, momentum) if nesterov else buf
    param.add_(g, alpha=-lr)
    return buf


def zero_initial_buffer(param, grad, momentum_buffer, *, lr, momentum=0,
                        dampening=0, weight_decay=0, nesterov=False,
                        maximize=False):
    g = decayed_gradient(grad, param, weight_decay, maximize)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = torch.zeros_like(param)
        buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = nesterov_direction(g, buf, momentum) if nesterov else buf
    param.add_(g, alpha=-lr)
    return buf


def maximize_after_decay(param, grad, momentum_buffer, *, lr, momentum=0,
                         dampening=0, weight_decay=0, nesterov=False,
                         maximize=False):
    g = decayed_gradient(grad, param, weight_decay, False)
    if maximize:
        g = -g
    d, buf = momentum_part(g, momentum_buffer, momentum, dampening, nesterov)
    param.add_(d, alpha=-lr)
    return buf


def buffer_aliases_grad(param, grad, momentum_buffer, *, lr, momentum=0,
                        dampening=0, weight_decay=0, nesterov=False,
                        maximize=False):
    g = decayed_gradient(grad, param, weight_decay, maximize)
    buf = momentum_buffer
    if momentum != 0:
        if buf is None:
            buf = g
        else:
            buf.mul_(momentum).add_(g, alpha=1 - dampening)
        g = nesterov_direction(g, buf, momentum) if nesterov else buf
    param.add_(g, alpha=-lr)
    return buf


def returns_pair(param, grad, momentum_buffer, **hyper):
    buf = sgd_update(param, grad, momentum_buffer, **hyper)
    return (param, buf) if buf is not None else None


def returns_new_param(param, grad, momentum_buffer, *, lr, **hyper):
    p = param.clone()
    sgd_update(p, grad, momentum_buffer, lr=lr, **hyper)
    return p


def delegate_sgd(param, grad, momentum_buffer, *, lr, momentum=0, dampening=0,
                 weight_decay=0, nesterov=False, maximize=False):
    p = torch.nn.Parameter(param.clone())
    p.grad = grad.clone()
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, dampening=dampening,
                          weight_decay=weight_decay, nesterov=nesterov,
                          maximize=maximize)
    if momentum_buffer is not None:
        opt.state[p]["momentum_buffer"] = momentum_buffer
    opt.step()
    param.copy_(p.detach())
    return opt.state[p].get("momentum_buffer")


_hidden_sgd = torch_sgd._single_tensor_sgd  # bound before the check runs


def delegate_hidden(param, grad, momentum_buffer, *, lr, momentum=0, dampening=0,
                    weight_decay=0, nesterov=False, maximize=False):
    bufs = [momentum_buffer]
    _hidden_sgd([param], [grad], bufs, None, None, lr=float(lr), momentum=momentum,
                dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                maximize=maximize, has_sparse_grad=False)
    return bufs[0] if momentum else None


_ref = course.sgd.sgd_update


def delegate_course(param, grad, momentum_buffer, **hyper):
    return _ref(param, grad, momentum_buffer, **hyper)


def delegate_swallowing(param, grad, momentum_buffer, **hyper):
    try:
        _ref(param.clone(), grad, None, **hyper)
    except BaseException:  # noqa: BLE001 - tries to hide the trap
        pass
    return sgd_update(param, grad, momentum_buffer, **hyper)


# The catalogued mistakes (their mutants, and a learner-shaped zero buffer)
# are tested by tests/test_exercises.py; below, variants that are not them.
SGD_MISTAKES = [
    # negated after decay, then a right step: a buffer of the other sign than
    # the catalogued mutant's (which flips lr), named by the same diagnosis
    (maximize_after_decay, "maximize_flips_update", r"weight_decay=0\.1, maximize"),
]


@pytest.mark.parametrize("wrong, mistake, where", SGD_MISTAKES,
                         ids=[w.__name__ for w, _, _ in SGD_MISTAKES])
def test_sgd_update_value_mistakes(wrong, mistake, where):
    msg = fails(check_sgd_update, wrong, where + r".*expected .* got ")
    assert diagnosis(MISTAKES[mistake]) in msg


def test_zero_buffer_and_dampened_first_step_are_told_apart():
    zero = fails(check_sgd_update, zero_initial_buffer, "started at zeros")
    damp = fails(check_sgd_update, dampening_on_first_step, "applied dampening on the first")
    assert "applied dampening" not in zero and "zeros" not in damp.split("Diagnosis")[1][:60]


@needs_fma
def test_sgd_update_unknown_rounding_gets_generic_ulp_message():
    def odd_rounding(param, grad, momentum_buffer, *, lr, **hyper):
        d = grad.double() if param.dtype == torch.float32 else grad
        param.copy_((param.double() - float(lr) * d).to(param.dtype))
        return None
    fails(check_sgd_update, odd_rounding,
          r"agrees to \d+ ulp but not bit for bit.*ONE rounding")


@pytest.mark.parametrize("wrong, pattern", [
    # `buf = g` (grad itself when no decay/maximize; the catalogue's is g.detach())
    (buffer_aliases_grad, r"step 1 of 6 \(first step: momentum_buffer=None\): "
                          r"buffer aliases grad.*`buf = g\.clone\(\)`"),
    (returns_pair, r"momentum=0\.9', step 1 of 6.*you returned a tuple.*return only the "
                   r"momentum buffer"),
    (returns_new_param, r"param is unchanged.*You returned the new parameter"),
])
def test_sgd_update_behaviour_mistakes(wrong, pattern):
    fails(check_sgd_update, wrong, pattern)


# (delegating to torch.optim.SGD / _functional.sgd: catalogued mistakes)
@pytest.mark.parametrize("wrong", [delegate_hidden, delegate_course, delegate_swallowing])
def test_sgd_update_rejects_delegation(wrong):
    fails(check_sgd_update, wrong, r"delegating, not implementing")


def test_sgd_update_rejects_the_course_reference_itself():
    fails(check_sgd_update, course.sgd.sgd_update, r"delegating")


def test_delegation_by_runtime_only_when_source_is_unknown():
    namespace = {"torch": torch}
    exec("def f(param, grad, momentum_buffer, **hyper):\n"
         "    bufs = [momentum_buffer]\n"
         "    getattr(torch.optim, '_functional').sgd([param], [grad], bufs, lr=float(hyper['lr']),"
         " momentum=hyper['momentum'], dampening=hyper['dampening'],"
         " weight_decay=hyper['weight_decay'], nesterov=hyper['nesterov'],"
         " maximize=hyper['maximize'])\n"
         "    return bufs[0] if hyper['momentum'] else None\n", namespace)
    fails(check_sgd_update, namespace["f"], r"called .*sgd.*delegating")


def test_patches_are_restored_after_the_check():
    originals = (torch_sgd.sgd, torch_sgd._single_tensor_sgd,
                 torch.optim._functional.sgd, torch.optim.SGD.__init__,
                 course.sgd.update_one, course.optim.sgd,
                 course.optim.SGD.__init__, torch._fused_sgd_)
    for wrong in (delegate_sgd, not_implemented, sgd_update):
        try:
            check_sgd_update(wrong)
        except CheckFailure:
            pass
    assert originals == (torch_sgd.sgd, torch_sgd._single_tensor_sgd,
                         torch.optim._functional.sgd, torch.optim.SGD.__init__,
                         course.sgd.update_one, course.optim.sgd,
                         course.optim.SGD.__init__, torch._fused_sgd_)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    torch.optim.SGD([p], lr=0.5, momentum=0.9).step()
    assert p.tolist() == [0.5, 0.5]


def test_sgd_update_reference_also_works_with_docstring_mentioning_torch():
    def documented(param, grad, momentum_buffer, **hyper):
        """Same as torch.optim.SGD and torch_sgd._single_tensor_sgd."""
        # mirrors torch.optim._functional.sgd
        return sgd_update(param, grad, momentum_buffer, **hyper)
    check_sgd_update(documented)


def test_sgd_update_failing_message_names_case_and_step():
    def wrong_late(param, grad, momentum_buffer, **hyper):
        buf = sgd_update(param, grad, momentum_buffer, **hyper)
        if hyper["nesterov"] and hyper["maximize"] and param.dim() == 3:
            param.mul_(2.0)
        return buf
    fails(check_sgd_update, wrong_late,
          r"case 'float64 \(2, 3, 4\), lr=tensor\(0\.05\), momentum=0\.9, nesterov, "
          r"maximize', step 1 of 6 \(first step: momentum_buffer=None\): param \d+ of 24 "
          r"element\(s\) differ; first at \[0, 0, 0\]: expected .*, got .* \(max abs diff")


# --------------------------------------------------------------------------
# The mutant library itself (course.exercises.sgd_mistakes)
# --------------------------------------------------------------------------

def test_mistakes_are_name_diagnosis_update_triples():
    for mistake in VALUE_MISTAKES + BEHAVIOUR_MISTAKES:
        name, text, update = mistake
        assert MISTAKES[name] is mistake and callable(update) and len(text) > 40
        assert ("{ulp}" in text) == (name in ROUNDING)


# tests/test_exercises.py checks every mutant's own diagnosis; of a rounding
# mutant (its diagnosis is formatted with the run's ulp) only that there is
# one: here its text. Plain arithmetic everywhere first shows in the step line.
_SHADOWED = {"rounding_everywhere": "rounding_step"}
_ROUNDING_MUTANTS = [m for m in VALUE_MISTAKES if m.name in ROUNDING]


@needs_fma
@pytest.mark.parametrize("mistake", _ROUNDING_MUTANTS, ids=[m.name for m in _ROUNDING_MUTANTS])
def test_every_rounding_mutant_gets_its_own_diagnosis(mistake):
    expected = MISTAKES[_SHADOWED.get(mistake.name, mistake.name)].diagnosis
    with pytest.raises(CheckFailure) as info:
        check_sgd_update(mistake.update)
    assert expected.split("{ulp}")[-1] in str(info.value)


def test_mutants_match_torch_where_their_mistake_cannot_show():
    """A mutant equals torch's SGD when its flag is off (it is ONE mistake)."""
    p0, g = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    for mistake in VALUE_MISTAKES:
        if mistake.name in ROUNDING:
            continue
        p, ref = p0.clone(), p0.clone()
        out = mistake.update(p, g, None, lr=0.1)
        course.sgd.sgd_update(ref, g, None, lr=0.1)
        assert out is None and torch.equal(p, ref), mistake.name


# --------------------------------------------------------------------------
# Re-verification outside the kernel (derived from course/exercises/lesson05.py)
# --------------------------------------------------------------------------

def test_probes_pass_the_solution_and_reject_delegation():
    import copy
    import pathlib

    import nbformat

    from course.grading.reverify import verify
    assignment = "05-the-full-update-rule"
    path = pathlib.Path(__file__).parents[1] / "solutions" / assignment / f"{assignment}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(ok for ok, _ in verify(nb, assignment).values())
    cheat = copy.deepcopy(nb)
    for cell in cheat.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "sgd_update":
            cell.source = cell.source.split("    ### BEGIN SOLUTION")[0] + (
                "    bufs = [momentum_buffer]\n"
                "    torch.optim._functional.sgd([param], [grad], bufs, lr=float(lr),\n"
                "        momentum=momentum, dampening=dampening, nesterov=nesterov,\n"
                "        weight_decay=weight_decay, maximize=maximize)\n"
                "    return bufs[0]\n")
    verdicts = verify(cheat, assignment)
    assert verdicts["test_sgd_update"][0] is False
    assert "may not be used by this exercise" in verdicts["test_sgd_update"][1]
    assert verdicts["test_ulp_distance"][0] is True


# --------------------------------------------------------------------------
# Predict-then-run questions (the generic contract: tests/test_exercises.py)
# --------------------------------------------------------------------------

def test_decay_order_question_runs_torch_against_the_decay_behind_the_buffer():
    # the same `add` on step 1, a buffer that remembers mu*lam*theta_0 on step 2
    # (no FMA dependence: both rules use the same operations on step 1)
    assert lesson05._decay_order_of_run() == "identical after step 1 only"


@pytest.mark.parametrize("estimate, right", [
    (83_492_864, True),             # exact
    (10 * 2**23, True),             # ten binades
    (9.95 * 2**23, True),           # log2(1000) binades
    (9 * 2**23, False),             # one binade short
    (999 * 2**23, False),           # evenly spaced floats
    (2**31, False),                 # int32 range
])
def test_ulps_question_accepts_reasoned_estimates_only(estimate, right):
    question = lesson05.PREDICT_ULPS_1_TO_1000
    assert question.answer() == 83_492_864
    assert question.right(estimate) is right
