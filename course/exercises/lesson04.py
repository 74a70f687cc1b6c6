r"""Exercise specs of 04-momentum: heavy-ball momentum in torch's convention,

$$b_1 = g_1, \qquad b_t = \beta\, b_{t-1} + (1 - \tau)\, g_t, \qquad
\theta_t = \theta_{t-1} - \gamma_t\, b_t,$$

compared with the "velocity" convention $v_t = \beta v_{t-1} + \gamma_t g_t$,
$\theta_t = \theta_{t-1} - v_t$:

- ``momentum_step`` -- one step on tensors, ``(new_p, new_buf)``; the buffer
  is a *clone* of the gradient on the first step (no dampening).
- ``heavy_ball`` -- the whole trajectory, compared with ``torch.optim.SGD``
  driven on the same function.
- ``effective_lr`` -- $\gamma (1 - \tau) / (1 - \beta)$, the steady-state step per
  unit of gradient that the steps of a constant gradient tend to.
- ``steps_after_lr_change`` -- the first step of both conventions after the
  learning rate changes.

Two predict-then-run questions: whether a zero-started buffer and torch's
copy of the first gradient give the same trajectory when $\tau = 0$
(``predict_zero_start``), and how many times the plain step the 100th step of
a constant gradient is at $\beta = 0.9$ (``predict_terminal_step``).

A wrong value is compared with the classic mistakes (named as in
:mod:`course.exercises.sgd_mistakes` where the catalogue has them: a
zero-initialised buffer, dampening on the first step, the learning rate inside
the buffer, ...). Hidden cases are drawn from each verification's seed: runs of
several ``momentum_step`` calls (float32 on exactly representable values, so
any rounding order gives the same bits, and float64), trajectories on random
quadratics (kept stable, float32 away from 0, so that rounding differences stay
within the tolerance), random hyper-parameters, shapes and tensors.
"""

from __future__ import annotations

import builtins
import dataclasses
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from course.exercises.spec import Case, Exercise, Mistake, Question, Run, run_case
from course.exercises.values import (
    COURSE_SGD,
    TENSOR_TYPES,
    TORCH_SGD,
    as_float,
    fmt,
    pair,
    same_storage,
    snap,
    type_name,
)
from course.functions import make_quadratic, rosenbrock_grad
from course.momentum import momentum_trajectory, torch_momentum_step, torch_sgd_trajectory

#: Observations use the builtins as they were before the learner's code ran.
__builtins__ = dict(vars(builtins))

#: The course's answer keys and every SGD, disabled while a submission is graded.
FORBIDDEN = [
    "course.momentum.torch_momentum_step", "course.momentum.velocity_momentum_step",
    "course.momentum.momentum_trajectory", "course.momentum.torch_sgd_trajectory",
    *TORCH_SGD, *COURSE_SGD,
]

_TENSOR = torch.Tensor
_F32, _F64 = torch.float32, torch.float64


# --------------------------------------------------------------------------
# Shared helpers (the check's side: they run in the learner's kernel only)
# --------------------------------------------------------------------------

def _failure(message: str) -> AssertionError:
    """A learner-facing failure (imported late: course.checks imports the specs)."""
    from course.checks._common import CheckFailure
    return CheckFailure(message)


def _mismatch(where: str, expected: Any, actual: Any, hint: str | None) -> AssertionError:
    """The standard "<where>: expected X, got Y." failure."""
    from course.checks._common import mismatch
    return mismatch(where, expected, actual, hint)


def _close(actual: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """Whether two values have the same shape and are close."""
    from course.checks._common import close
    return close(actual, expected, rtol=rtol, atol=atol)


def _part_diagnosis(exercise: Exercise, got: Run, expected: Run,
                    part: Callable[[Any], Any]) -> str | None:
    """The first catalogued mistake that gives the learner's values on ``part``
    of the observation (and not the expected ones); else the spec's diagnosis.

    ``part`` selects the reported value and the values reported before it, so a
    wrong second value is only blamed on mistakes that got the first one right.
    """
    from course.checks.derive import agree
    rtol, atol = exercise.rtol, exercise.atol
    try:
        seen, want = part(exercise.observe(got)), part(exercise.observe(expected))
    except Exception:  # noqa: BLE001 - a malformed result: no diagnosis
        return None
    for mistake in exercise.mistakes:
        try:
            with np.errstate(all="ignore"):
                wrong = part(exercise.observe(run_case(exercise, mistake.impl, got.case)))
        except Exception:  # noqa: BLE001, S112 - this mistake does not apply here
            continue
        if agree(seen, wrong, rtol, atol) and not agree(wrong, want, rtol, atol):
            return mistake.text(got)
    return exercise.diagnose(got, expected) if exercise.diagnose is not None else None


def _unpack_pair(out: Any, name: str, what: str) -> str | None:
    """The message for a result that is not a pair ``what``, else None."""
    if out is None:
        return f"`{name}` returned None.\n  Diagnosis: did you forget `return {what}`?"
    if type(out) not in (tuple, list) or len(out) != 2:
        return (f"`{name}` must return a pair {what}, got {type(out).__name__} "
                f"{fmt(out)}.\n  Diagnosis: end with `return {what}` (two values).")
    return None


def _bits_equal(a: Any, b: Any) -> bool:
    """Whether two tensors are equal bit for bit (same dtype and shape)."""
    return type(a) is _TENSOR and type(b) is _TENSOR and a.dtype == b.dtype \
        and a.shape == b.shape and bool(torch.equal(a, b))


def _shape(rng: np.random.Generator) -> tuple[int, ...]:
    """A random tensor shape: 0 to 2 axes of 1 to 6 entries."""
    return tuple(int(n) for n in rng.integers(1, 7, size=int(rng.integers(0, 3))))


# --------------------------------------------------------------------------
# Exercise 4.1: momentum_step
# --------------------------------------------------------------------------

def momentum_step(p: Any, grad: Any, buf: Any, lr: float, momentum: float,
                  dampening: float = 0.0) -> tuple[Any, Any]:
    """Torch's heavy-ball step (the course's oracle, checked against torch.optim.SGD)."""
    return torch_momentum_step(p, grad, buf, lr=lr, momentum=momentum, dampening=dampening)


class _Step(NamedTuple):
    """One ``momentum_step`` call of a run: what it returned, and what is compared."""

    out: Any
    seen: list[Any]


def _momentum_flow(fn: Any, case: Case) -> list[_Step]:
    """Call ``fn`` once per gradient (the case's, then ``case.data``'s), feeding
    its ``(new_p, new_buf)`` back in. After each call: the gradient as it is
    then, whether the first buffer shares memory with it, the types, and the
    buffer after the gradient is zeroed (what ``zero_grad`` does) -- the buffer
    must not follow it."""
    p, g, buf, *hyper = case.args
    grads = [g] + [x.clone() for x in (case.data or ())]
    steps = []
    for g in grads:
        out = fn(p, g, buf, *hyper)
        new_p, new_buf = pair(out)
        g_after = snap(g)
        first_alias = buf is None and same_storage(new_buf, g)
        tensors = type(new_p) is _TENSOR and type(new_buf) is _TENSOR
        seen = [snap(new_p), snap(new_buf), g_after, first_alias, tensors]
        if tensors:
            g.zero_()
            seen.append(snap(new_buf))
            g.copy_(g_after)
        steps.append(_Step(out, seen))
        if not tensors:
            break
        p, buf = new_p, new_buf
    return steps


def _momentum_observe(run: Run) -> Any:
    return [step.seen for step in run.result]


def _momentum_contract(got: Run, expected: Run) -> str | None:
    out, name = got.result[0].out, "momentum_step"
    message = _unpack_pair(out, name, "new_p, new_buf")
    if message:
        return message
    new_p, new_buf = out
    p, g = got.case.args[:2]
    if new_buf is None:
        return ("the returned buffer is None.\n  Diagnosis: on the first step (buf is "
                "None) create the buffer as a copy of the gradient, `new_buf = "
                "grad.clone()`, and return it.")
    for what, value in (("new_p", new_p), ("new_buf", new_buf)):
        if type(value) not in TENSOR_TYPES:
            return (f"{what} must be a torch.Tensor, got {type(value).__name__} "
                    f"{fmt(value)}.\n  Diagnosis: compute with tensor operations on p, "
                    "grad and buf (no .item(), no numpy).")
        if value.shape != p.shape:
            return (f"{what} has shape {tuple(value.shape)}, expected {tuple(p.shape)} "
                    "(the shape of p).")
        if value.dtype != p.dtype:
            return (f"{what} has dtype {value.dtype} but p is {p.dtype}.\n  Diagnosis: "
                    "keep the parameter's dtype: multiply tensors by Python floats, don't "
                    "build new tensors with a default dtype.")
    g_after = got.result[0].seen[2]
    if not torch.equal(g_after, g):
        return (f"`{name}` changed grad in place (it is now {fmt(g_after)}).\n  "
                "Diagnosis: torch never modifies p.grad in step(). Update the buffer, not "
                "the gradient: on the first step `new_buf = grad.clone()`, later "
                "`buf.mul_(momentum).add_(grad, alpha=1 - dampening)`.")
    if got.result[0].seen[3]:
        return f"new_buf aliases grad.\n  Diagnosis: {ALIAS}"
    return None


def _momentum_parts(got: Run, expected: Run) -> str | None:
    """A wrong buffer, else a wrong parameter: named, with its own diagnosis."""
    seen, want = got.result[0].seen, expected.result[0].seen
    for what, index, part in (("new_buf", 1, lambda obs: obs[0][1]),
                              ("new_p", 0, lambda obs: obs[0][:2])):
        if not _close(seen[index], want[index]):
            raise _mismatch(f"{got.case.name}, {what}", want[index], seen[index],
                            _part_diagnosis(MOMENTUM_STEP, got, expected, part))
    return None


def _momentum_line(n: int, exact: bool) -> str:
    how = ("bit for bit, as torch.optim.SGD" if exact else
           "to float rounding (not bit for bit: lesson 5 shows why)")
    return (f"momentum_step: {n} cases (first steps with and without dampening, "
            f"later steps, float32/float64) match torch's rule {how}; the first buffer "
            "is a copy of grad")


def _momentum_passed(runs: Sequence[tuple[Run, Run]]) -> str:
    """momentum_step: torch's rule, first step included, bit for bit or to float rounding"""
    return _momentum_line(len(runs), all(
        _bits_equal(a, b) for got, want in runs
        for a, b in zip(got.result[0].seen[:2], want.result[0].seen[:2])))


ZERO_START = (
    "your first momentum step started from a zero buffer: b = β·0 + (1 − τ)·g "
    "= (1 − τ)·g, which equals g only when τ = 0. Torch does not start from "
    "zeros: on a parameter's first step the buffer IS the gradient, "
    "`new_buf = grad.clone()` (no dampening), and only from the second step "
    "on b = β·b + (1 − τ)·g.")
FIRST_DAMPENED = (
    "you applied dampening on the first step: b = (1 − τ)·g (starting from a "
    "zero buffer gives the same, β·0 + (1 − τ)·g). Torch copies the gradient "
    "unchanged on a parameter's first step, `new_buf = grad.clone()`; "
    "dampening only applies from the second step on, b = β·b + (1 − τ)·g.")
LR_IN_BUFFER = (
    "the learning rate is inside your buffer (the 'velocity' convention "
    "v = β·v + lr·g, p − v). Torch keeps lr outside: b = β·b + (1 − τ)·g, "
    "then new_p = p − lr·b. The buffer holds gradients, not steps.")
SIGN_BUFFER = (
    "the momentum sign is wrong: torch ADDS the old buffer and the gradient, "
    "b = β·b + (1 − τ)·g (the minus sign only appears in p − lr·b). "
    "The velocity form v = β·v − lr·g, p + v has the opposite sign (and lr "
    "inside v).")
ALIAS = (
    "the buffer you returned shares memory with grad (`new_buf = grad` or "
    "`grad.detach()`). Then `zero_grad()` or the next `backward()` writes into "
    "your momentum, and updating the buffer in place overwrites p.grad. Make a "
    "copy: `new_buf = grad.clone()`.")


def mentions_zeros(fn: Any) -> bool:
    """Whether the learner's source creates a zero tensor (a zero buffer)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return "zeros" in source


def _buffer_mistake(first: Callable[..., Any], later: Callable[..., Any]) -> Callable[..., Any]:
    """A learner's momentum_step with a wrong buffer (``first(g, τ, lr)`` when
    buf is None, else ``later(buf, g, β, τ, lr)``), stepping p − lr·b with it."""
    def momentum_step(p, grad, buf, lr, momentum, dampening=0.0):
        if buf is None:
            new_buf = first(grad, dampening, lr)
        else:
            new_buf = later(buf, grad, momentum, dampening, lr)
        return p - lr * new_buf, new_buf
    return momentum_step


def _step_mistake(new_p: Callable[..., Any]) -> Callable[..., Any]:
    """A learner's momentum_step with the right buffer b and the parameter
    ``new_p(p, g, buf, lr, b)``."""
    def momentum_step(p, grad, buf, lr, momentum, dampening=0.0):
        b = grad.clone() if buf is None else momentum * buf + (1 - dampening) * grad
        return new_p(p, grad, buf, lr, b), b
    return momentum_step


def _zero_initial_buffer(p, grad, buf, lr, momentum, dampening=0.0):
    if buf is None:
        buf = torch.zeros_like(grad)
    buf = momentum * buf + (1 - dampening) * grad
    return p - lr * buf, buf


def _right(buf: Any, g: Any, beta: float, tau: float, lr: float) -> Any:
    return beta * buf + (1 - tau) * g


MOMENTUM_STEP = Exercise(
    grade_id="test_momentum_step",
    name="momentum_step",
    reference=momentum_step,
    cases=[
        Case("first step (buf=None), lr=0.1, momentum=0.9",
             (torch.tensor([1.0, -2.0, 0.5], dtype=_F32),
              torch.tensor([0.5, -1.0, 2.0], dtype=_F32), None, 0.1, 0.9, 0.0)),
        Case("first step (buf=None), lr=0.05, momentum=0.9, dampening=0.5",
             (torch.tensor([0.3, 1.5], dtype=_F32), torch.tensor([2.0, -4.0], dtype=_F32),
              None, 0.05, 0.9, 0.5)),
        Case("later step, lr=0.05, momentum=0.9",
             (torch.tensor([1.0, -2.0, 0.5], dtype=_F32),
              torch.tensor([0.5, -1.0, 2.0], dtype=_F32),
              torch.tensor([1.5, 2.0, -1.0], dtype=_F32), 0.05, 0.9, 0.0)),
        Case("later step, lr=0.15, momentum=0.8, dampening=0.3",
             (torch.tensor([2.0, 0.25, -1.0], dtype=_F32),
              torch.tensor([-1.0, 3.0, 0.5], dtype=_F32),
              torch.tensor([0.5, 1.0, 4.0], dtype=_F32), 0.15, 0.8, 0.3)),
        Case("float64 2x2 parameter, later step, lr=0.03, momentum=0.5, dampening=0.1",
             (torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=_F64),
              torch.tensor([[4.0, -2.0], [1.0, 6.0]], dtype=_F64),
              torch.tensor([[-1.0, 0.5], [2.0, 3.0]], dtype=_F64), 0.03, 0.5, 0.1)),
    ],
    observe=_momentum_observe,
    call=_momentum_flow,
    show=lambda run: run.result[0].seen[:2],
    passed="",           # set below, from the number of cases
    passed_text=_momentum_passed,
    rtol=1e-6, atol=1e-7,
    rules=[_momentum_contract],
    after=[_momentum_parts],
    mistakes=[
        # a wrong first buffer (both read the learner's source: same values)
        Mistake("zero_initial_buffer",
                lambda run: ZERO_START if mentions_zeros(run.fn) else FIRST_DAMPENED,
                _zero_initial_buffer),
        Mistake("dampening_on_first_step", FIRST_DAMPENED,
                _buffer_mistake(lambda g, tau, lr: (1 - tau) * g, _right)),
        Mistake("lr_in_buffer", LR_IN_BUFFER,
                _buffer_mistake(lambda g, tau, lr: lr * g,
                                lambda b, g, beta, tau, lr: beta * b + lr * (1 - tau) * g)),
        Mistake("lr_in_buffer_ignores_dampening", LR_IN_BUFFER,
                _buffer_mistake(lambda g, tau, lr: lr * g,
                                lambda b, g, beta, tau, lr: beta * b + lr * g)),
        Mistake("cs231n_sign", SIGN_BUFFER,
                _buffer_mistake(lambda g, tau, lr: -g,
                                lambda b, g, beta, tau, lr: beta * b - (1 - tau) * g)),
        Mistake("cs231n_sign_zero_buffer", SIGN_BUFFER,
                _buffer_mistake(lambda g, tau, lr: -(1 - tau) * g,
                                lambda b, g, beta, tau, lr: beta * b - (1 - tau) * g)),
        Mistake("old_buffer_negated", SIGN_BUFFER,
                _buffer_mistake(lambda g, tau, lr: g.clone(),
                                lambda b, g, beta, tau, lr: -beta * b + (1 - tau) * g)),
        Mistake("buffer_negated", SIGN_BUFFER,
                _buffer_mistake(lambda g, tau, lr: -g,
                                lambda b, g, beta, tau, lr: -beta * b - (1 - tau) * g)),
        Mistake("dampening_as_factor",
                "you multiplied the gradient by the dampening τ; torch multiplies it "
                "by (1 − τ): b = β·b + (1 − dampening)·g.",
                _buffer_mistake(lambda g, tau, lr: g.clone(),
                                lambda b, g, beta, tau, lr: beta * b + tau * g)),
        Mistake("buffer_ignores_dampening",
                "you ignored dampening: from the second step on torch scales the "
                "gradient by (1 − τ), b = β·b + (1 − dampening)·g.",
                _buffer_mistake(lambda g, tau, lr: g.clone(),
                                lambda b, g, beta, tau, lr: beta * b + g)),
        Mistake("ema_buffer",
                "you scaled the gradient by (1 − momentum), an exponential moving "
                "average. Torch scales it by (1 − dampening): b = β·b + (1 − τ)·g "
                "(with dampening = 0 it adds the full gradient).",
                _buffer_mistake(lambda g, tau, lr: g.clone(),
                                lambda b, g, beta, tau, lr: beta * b + (1 - beta) * g)),
        Mistake("buffer_restarted",
                "you restarted the buffer from the gradient although a buffer was "
                "given: `grad.clone()` is only for the first step (buf is None); "
                "afterwards b = β·b + (1 − τ)·g.",
                _buffer_mistake(lambda g, tau, lr: g.clone(),
                                lambda b, g, beta, tau, lr: g.clone())),
        Mistake("buffer_not_updated",
                "you returned the old buffer unchanged: update it, "
                "b = β·b + (1 − τ)·g.",
                _buffer_mistake(lambda g, tau, lr: g.clone(),
                                lambda b, g, beta, tau, lr: b)),
        Mistake("momentum_factor_missing",
                "you forgot the momentum factor on the old buffer: "
                "b = β·b + (1 − τ)·g, not b + (1 − τ)·g.",
                _buffer_mistake(lambda g, tau, lr: g.clone(),
                                lambda b, g, beta, tau, lr: b + (1 - tau) * g)),
        Mistake("buffer_left_zero",
                "the buffer is still all zeros: on a parameter's first step torch "
                "sets the buffer to a copy of the gradient, `new_buf = grad.clone()`.",
                _buffer_mistake(lambda g, tau, lr: torch.zeros_like(g), _right)),
        # the right buffer, a wrong parameter
        Mistake("moved_uphill",
                "your update moved p uphill: new_p = p − lr·new_buf (subtract), "
                "not p + lr·new_buf.",
                _step_mistake(lambda p, g, buf, lr, b: p + lr * b)),
        Mistake("step_with_gradient",
                "you stepped with the raw gradient: the update uses the NEW buffer, "
                "new_p = p − lr·new_buf.",
                _step_mistake(lambda p, g, buf, lr, b: p - lr * g)),
        Mistake("step_with_old_buffer",
                "you stepped with the OLD buffer: first update the buffer, then "
                "new_p = p − lr·new_buf.",
                _step_mistake(lambda p, g, buf, lr, b: p - lr * (b if buf is None else buf))),
        Mistake("lr_missing", "you forgot the learning rate: new_p = p − lr·new_buf.",
                _step_mistake(lambda p, g, buf, lr, b: p - b)),
        Mistake("p_not_moved", "p did not move: return new_p = p − lr·new_buf.",
                _step_mistake(lambda p, g, buf, lr, b: p.clone())),
    ],
    hidden=lambda rng: _momentum_hidden(rng),
    forbidden=FORBIDDEN,
)


def _momentum_hidden(rng: np.random.Generator) -> Iterator[Case]:
    """Runs of 4 steps from a fresh buffer: float32 on multiples of 1/16 (lr in
    32nds, momentum in 16ths, dampening in 8ths: every intermediate value is
    exact, so any rounding order gives the same bits) and float64 on normal
    draws; dampening given or left at its default; random shapes (0-d included)."""
    configs: list[tuple[torch.dtype, tuple[int, ...], float, float, float]] = []
    for tau in (0.0, None, 0.0, None):
        configs.append((_F32, _shape(rng), int(rng.integers(1, 10)) / 32,
                        int(rng.integers(0, 16)) / 16,
                        int(rng.integers(1, 8)) / 8 if tau is None else tau))
    for tau in (0.0, None, None, 0.0):
        configs.append((_F64, _shape(rng), float(rng.uniform(0.001, 0.3)),
                        float(rng.uniform(0.0, 0.99)),
                        float(rng.uniform(0.05, 0.95)) if tau is None else tau))
    configs.append((_F64, (), float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.3, 0.7)),
                    0.0))                                         # a 0-d parameter
    configs.append((_F64, _shape(rng), float(rng.uniform(0.001, 0.05)),
                    float(rng.uniform(0.95, 0.995)), float(rng.uniform(0.8, 0.95))))

    def draw(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if dtype == _F64:
            return torch.tensor(np.asarray(rng.standard_normal(shape)), dtype=dtype)
        return torch.tensor(np.asarray(rng.integers(-16, 17, size=shape)) / 16, dtype=dtype)

    for dtype, shape, lr, beta, tau in configs:
        p, grads = draw(shape, dtype), [draw(shape, dtype) for _ in range(4)]
        yield Case(f"a random {dtype} run of 4 steps",
                   (p, grads[0], None, lr, beta) + ((tau,) if tau else ()), data=grads[1:])


# --------------------------------------------------------------------------
# Exercise 4.2: heavy_ball
# --------------------------------------------------------------------------

def heavy_ball(f_grad: Any, w0: Any, lr: float, momentum: float, n_steps: int,
               dampening: float = 0.0) -> Any:
    """``torch.optim.SGD``'s trajectory on ``f_grad`` (the oracle)."""
    return torch_sgd_trajectory(f_grad, w0, lr, momentum, n_steps, dampening=dampening)


def _heavy_ball_flow(fn: Any, case: Case) -> Any:
    """Call ``fn``; a NotImplementedError raised by ANOTHER unfinished exercise
    (``heavy_ball`` calling a stub ``momentum_step``) is named."""
    try:
        return fn(*case.args, **case.kwargs)
    except NotImplementedError as err:
        tb = err.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        inner = tb.tb_frame.f_code.co_name if tb is not None else "heavy_ball"
        if inner not in ("heavy_ball", getattr(fn, "__name__", "heavy_ball"), "<lambda>"):
            raise _failure(
                f"`heavy_ball` calls `{inner}`, which is not implemented yet: finish "
                f"`{inner}` first (run its cell and its check), then run this check "
                "again.") from None
        raise


def _heavy_ball_observe(run: Run) -> Any:
    h = run.result
    tensor = type(h) is _TENSOR
    return [snap(h), str(h.dtype) if tensor else type_name(h),
            list(h.shape) if tensor else None, snap(run.args[1])]


def _heavy_ball_contract(got: Run, expected: Run) -> str | None:
    out, name = got.result, "heavy_ball"
    if out is None:
        return (f"`{name}` returned None.\n  Diagnosis: did you forget "
                "`return torch.stack(history)` after the loop?")
    if type(out) in (list, tuple):
        return (f"`{name}` returned a {type(out).__name__}; return one tensor of shape "
                "(n_steps + 1, *w0.shape).\n  Diagnosis: collect the points in a list "
                "and `return torch.stack(history)`.")
    if type(out) not in TENSOR_TYPES:
        message = (f"expected a tensor of shape (n_steps + 1, *w0.shape), got "
                   f"{type(out).__name__} {fmt(out)}.")
        if type(out) is np.ndarray:
            message += ("\n  Diagnosis: return the tensor itself, "
                        "`torch.stack(history)`, not a numpy array.")
        return message
    history, want = out.detach(), expected.result
    w0, n_steps = got.case.args[1], got.case.args[4]
    if tuple(history.shape) != tuple(want.shape):
        return _shape_message(history, want, n_steps)
    if history.dtype != w0.dtype:
        return (f"your history has dtype {history.dtype} but w0 is {w0.dtype}.\n  "
                "Diagnosis: keep w0's dtype (torch.optim.SGD does): start from w = "
                "w0.clone() and stack the points; don't preallocate with "
                "torch.zeros(...) in the default dtype.")
    w0_in = got.args[1]
    if not torch.equal(w0_in, w0):
        return (f"`{name}` changed the caller's w0 in place (it is now {fmt(w0_in)}).\n"
                "  Diagnosis: start from a copy, w = w0.clone().")
    return None


def _shape_message(history: Any, expected: Any, n_steps: int) -> str:
    got, want = tuple(history.shape), tuple(expected.shape)
    msg = f"expected a history of shape {want}, got {got}."
    if len(got) == len(want) and got[1:] == want[1:]:
        if (got[0] == n_steps and n_steps > 0
                and _close(history, expected[:-1], rtol=1e-5, atol=1e-6)
                and not _close(history, expected[1:], rtol=1e-5, atol=1e-6)):
            hint = ("the last step is missing: loop `for _ in range(n_steps)` and append "
                    "the new point after every step.")
        elif got[0] == n_steps and n_steps > 0:
            hint = ("the starting point is missing: history[0] must be w0, so start "
                    "with history = [w.clone()] and append one point per step "
                    "(n_steps + 1 rows).")
        elif got[0] == n_steps + 2:
            hint = ("one row too many: start with [w0] and append once per step, for "
                    "n_steps steps.")
        else:
            hint = "one row per point: w0, then one after each of the n_steps steps."
        msg += f"\n  Diagnosis: {hint}"
    return msg


def _heavy_ball_rows(got: Run, expected: Run) -> str | None:
    """Name the first wrong row (w_t) and the mistake behind the trajectory."""
    history, want = got.result.detach(), expected.result
    ex = HEAVY_BALL
    ok = torch.isclose(history.to(_F64), want.to(_F64), rtol=ex.rtol, atol=ex.atol,
                       equal_nan=True)
    bad = (~ok).reshape(len(history), -1).any(dim=1).nonzero()
    t = int(bad[0, 0]) if len(bad) else 0
    raise _mismatch(f"{got.case.name}, row {t} (w_{t})", want[t], history[t],
                    _part_diagnosis(ex, got, expected, lambda obs: obs))


def _heavy_ball_diagnose(got: Run, expected: Run) -> str | None:
    history, w0 = got.result.detach(), got.case.args[1]
    if len(history) > 2 and all(torch.equal(row, history[-1]) for row in history):
        return ("every row of your history is the same point (the last one): you "
                "appended the tensor w and then changed it in place (w -= ..., "
                "w.add_(...)). Append a copy, `history.append(w.clone())`.")
    if not _close(history[0], w0, rtol=HEAVY_BALL.rtol, atol=HEAVY_BALL.atol):
        return "row 0 of the history must be the starting point w0."
    return None


def _trajectory(bug: str) -> Callable[..., Any]:
    """A learner's heavy_ball with one classic mistake (plain arithmetic)."""
    def heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening=0.0):
        w, buf, history = w0.clone(), None, [w0.clone()]
        for _ in range(n_steps):
            g = f_grad(w)
            if bug == "buffer_reset_every_step":          # buf = None inside the loop
                buf = g.clone()
            elif bug == "zero_initial_buffer":
                buf = momentum * (torch.zeros_like(g) if buf is None else buf) \
                    + (1 - dampening) * g
            elif bug == "buffer_ignores_dampening":
                buf = g.clone() if buf is None else momentum * buf + g
            else:
                buf = g.clone() if buf is None else momentum * buf + (1 - dampening) * g
            w = w + lr * buf if bug == "moved_uphill" else w - lr * buf
            history.append(w.clone())
        return torch.stack(history)
    return heavy_ball


def _heavy_ball_line(n: int, exact: bool) -> str:
    how = "bit for bit" if exact else "to float rounding (not bit for bit: lesson 5 shows why)"
    return (f"heavy_ball: {n} runs (quadratics, Rosenbrock, dampening, float32, "
            f"n_steps=0) equal torch.optim.SGD's trajectory {how}; w0 is left unchanged")


def _heavy_ball_passed(runs: Sequence[tuple[Run, Run]]) -> str:
    """heavy_ball: torch.optim.SGD's trajectory, bit for bit or to float rounding"""
    return _heavy_ball_line(len(runs), all(_bits_equal(got.result, want.result)
                                           for got, want in runs))


class _Quadratic:
    """The gradient A (w - c) of a quadratic (a copyable f_grad)."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor) -> None:
        self.a, self.c = a, c

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.a @ (w - self.c)


class _Constant:
    """A constant gradient: the same tensor object at every call."""

    def __init__(self, g: torch.Tensor) -> None:
        self.g = g

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.g


def _quadratic(rng: np.random.Generator, dtype: torch.dtype, d: int,
               center: tuple[float, float]) -> tuple[_Quadratic, float, np.ndarray]:
    """A random quadratic 0.5 (w - c)^T A (w - c) (|c_i| in ``center``): its
    gradient, A's largest eigenvalue and c."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = rng.uniform(0.5, 5.0, size=d)
    a = q @ np.diag(eig) @ q.T
    c = rng.choice([-1.0, 1.0], size=d) * rng.uniform(*center, size=d)
    return (_Quadratic(torch.tensor((a + a.T) / 2, dtype=dtype), torch.tensor(c, dtype=dtype)),
            float(eig.max()), c)


def _heavy_ball_hidden(rng: np.random.Generator) -> Iterator[Case]:
    families = [  # (label, dtype, momentum, dampening or None for the default, n_steps)
        ("a random quadratic", _F64, float(rng.uniform(0.5, 0.95)), None, 25),
        ("a random quadratic with dampening", _F64, float(rng.uniform(0.0, 0.9)),
         float(rng.uniform(0.1, 0.9)), int(rng.integers(5, 30))),
        ("a random float32 quadratic", _F32, float(rng.uniform(0.0, 0.8)), None, 30),
        ("a random quadratic, momentum 0", _F64, 0.0, None, int(rng.integers(3, 9))),
        ("a random quadratic, n_steps=0", _F64, float(rng.uniform(0.0, 0.95)), None, 0),
        ("a random quadratic", _F64, float(rng.uniform(0.0, 0.95)), None,
         int(rng.integers(1, 40))),
    ]
    for label, dtype, beta, tau, n in families:
        d = int(rng.integers(1, 5))
        if dtype == _F32:   # minimum and start away from 0: float32 rounding stays small
            f_grad, top, c = _quadratic(rng, dtype, d, (1.5, 3.0))
            w0 = torch.tensor(c + rng.uniform(-0.3, 0.3, size=d), dtype=dtype)
        else:
            f_grad, top, _ = _quadratic(rng, dtype, d, (0.0, 2.0))
            w0 = torch.tensor(rng.uniform(-2.0, 2.0, size=d), dtype=dtype)
        # lr (1 - tau) L <= 1 + beta: a stable run (rounding differences do not grow)
        lr = float(rng.uniform(0.1, 1.0)) * (1 + beta) / (top * (1 - (tau or 0.0)))
        yield Case(label, (f_grad, w0, lr, beta, n) + (() if tau is None else (tau,)))
    g = torch.tensor(float(rng.uniform(-3.0, 3.0)), dtype=_F64)
    yield Case("a 0-d point, a constant gradient", (
        _Constant(g), torch.tensor(float(rng.uniform(-1.0, 1.0)), dtype=_F64),
        float(rng.uniform(0.01, 0.3)), float(rng.uniform(0.0, 0.95)), 6,
        float(rng.uniform(0.1, 0.9))))


_F25 = make_quadratic(2, 25.0, rotate=False)
_F10 = make_quadratic(2, 10.0, seed=1)

HEAVY_BALL = Exercise(
    grade_id="test_heavy_ball",
    name="heavy_ball",
    reference=heavy_ball,
    cases=[
        Case("κ=25 quadratic, w0=(-1.8, 0.6), lr=0.03, momentum=0.7, 15 steps",
             (_F25.grad, torch.tensor([-1.8, 0.6], dtype=_F64), 0.03, 0.7, 15, 0.0)),
        Case("rotated κ=10 quadratic, lr=0.05, momentum=0.9, dampening=0.5, 12 steps",
             (_F10.grad, torch.tensor([1.0, -1.5], dtype=_F64), 0.05, 0.9, 12, 0.5)),
        Case("Rosenbrock, float32 w0=(-1.2, 1.0), lr=0.001, momentum=0.9, 10 steps",
             (rosenbrock_grad, torch.tensor([-1.2, 1.0], dtype=_F32), 1e-3, 0.9, 10, 0.0)),
        Case("κ=25 quadratic, n_steps=0",
             (_F25.grad, torch.tensor([0.5, 0.5], dtype=_F64), 0.04, 0.7, 0, 0.0)),
    ],
    observe=_heavy_ball_observe,
    call=_heavy_ball_flow,
    passed="",           # set below, from the number of cases
    passed_text=_heavy_ball_passed,
    hidden=lambda rng: _heavy_ball_hidden(rng),
    rtol=1e-6, atol=1e-9,
    rules=[_heavy_ball_contract],
    after=[_heavy_ball_rows],
    diagnose=_heavy_ball_diagnose,
    mistakes=[
        Mistake("buffer_reset_every_step",
                "your trajectory is plain gradient descent: the buffer is reset every "
                "step (or never passed from one step to the next). Create buf = None "
                "BEFORE the loop and keep the buffer returned by each step: `w, buf = "
                "momentum_step(w, g, buf, lr, momentum, dampening)`.",
                _trajectory("buffer_reset_every_step")),
        Mistake("zero_initial_buffer",
                "your first momentum step started from a zero buffer, so the first "
                "step was scaled by (1 − dampening). Torch sets the buffer to a copy "
                "of the first gradient (no dampening): start with buf = None and let "
                "momentum_step clone grad.",
                _trajectory("zero_initial_buffer")),
        Mistake("moved_uphill", "your iterates moved uphill: subtract the step, w − lr·b.",
                _trajectory("moved_uphill")),
        Mistake("buffer_ignores_dampening",
                "you ignored dampening: from the second step on the gradient enters "
                "the buffer as (1 − τ)·g. Pass dampening on to momentum_step.",
                _trajectory("buffer_ignores_dampening")),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 4.3: effective_lr
# --------------------------------------------------------------------------

def effective_lr(lr: float, momentum: float, dampening: float = 0.0) -> float:
    r"""$\gamma (1 - \tau) / (1 - \beta)$: the limit of the step per unit of a constant gradient."""
    return lr * (1 - dampening) / (1 - momentum)


def _effective_lr_contract(got: Run, expected: Run) -> str | None:
    out = got.result
    if out is None:
        return "`effective_lr` returned None.\n  Diagnosis: did you forget `return`?"
    if type(out) is bool or type(as_float(out)) is str:
        return f"expected a number, got {type(out).__name__} {fmt(out)}."
    return None


def _effective_lr_hidden(rng: np.random.Generator) -> Iterator[Case]:
    def lr() -> float:
        return float(10 ** rng.uniform(-3.0, 0.0))
    for _ in range(6):
        yield Case("random lr, momentum, dampening", (lr(), float(rng.uniform(0.0, 0.99)),
                                                      float(rng.uniform(0.0, 0.95))))
    for _ in range(2):                                    # the default dampening 0
        yield Case("random lr, momentum", (lr(), float(rng.uniform(0.0, 0.99))))
    yield Case("momentum 0", (lr(), 0.0, float(rng.uniform(0.0, 0.95))))
    yield Case("momentum near 1", (lr(), float(rng.uniform(0.95, 0.995)),
                                   float(rng.uniform(0.5, 0.95))))


MOMENTUM_STEP = dataclasses.replace(
    MOMENTUM_STEP, passed=_momentum_line(len(MOMENTUM_STEP.cases), exact=True))
HEAVY_BALL = dataclasses.replace(
    HEAVY_BALL, passed=_heavy_ball_line(len(HEAVY_BALL.cases), exact=True))


EFFECTIVE_LR = Exercise(
    grade_id="test_effective_lr",
    name="effective_lr",
    reference=effective_lr,
    cases=[Case(f"lr={lr}, momentum={beta}, dampening={tau}", (lr, beta, tau))
           for lr, beta, tau in [(0.1, 0.9, 0.0), (0.01, 0.0, 0.0), (0.02, 0.5, 0.0),
                               (0.05, 0.5, 0.5), (0.1, 0.9, 0.9), (0.2, 0.75, 0.25)]],
    observe=lambda run: as_float(run.result),
    show=lambda run: as_float(run.result),
    passed="effective_lr: 6 cases match lr·(1 − dampening)/(1 − momentum), the "
           "steady-state step per unit of a constant gradient",
    hidden=_effective_lr_hidden,
    rtol=1e-6, atol=1e-9,          # a float32 tensor (torch.tensor(...)) is a fine answer
    rules=[_effective_lr_contract],
    mistakes=[
        Mistake("buffer_ignores_dampening",
                "you forgot dampening: in the steady state each gradient enters the "
                "buffer as (1 − τ)·g, so the step is lr·(1 − τ)/(1 − β).",
                lambda lr, m, d=0.0: lr / (1 - m)),
        Mistake("multiplied_by_one_minus_momentum",
                "you multiplied by (1 − β) instead of dividing: the buffer sums "
                "g·(1 + β + β² + ...) = g/(1 − β), which is LARGER than g.",
                lambda lr, m, d=0.0: lr * (1 - d) * (1 - m)),
        Mistake("series_one_plus_momentum",
                "the geometric series 1 + β + β² + ... sums to 1/(1 − β), not 1/(1 + β).",
                lambda lr, m, d=0.0: lr * (1 - d) / (1 + m)),
        Mistake("newest_gradient_left_out",
                "you left out the newest gradient: the buffer is "
                "(1 − τ)·g·(1 + β + β² + ...), which starts at 1, not at β.",
                lambda lr, m, d=0.0: lr * (1 - d) * m / (1 - m)),
        Mistake("dampening_as_factor", "you used dampening τ where torch uses (1 − τ).",
                lambda lr, m, d=0.0: lr * d / (1 - m)),
        Mistake("divided_by_one_minus_dampening",
                "you divided by (1 − τ): dampening shrinks the step, lr·(1 − τ)/(1 − β).",
                lambda lr, m, d=0.0: lr / ((1 - d) * (1 - m))),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Exercise 4.4: steps_after_lr_change
# --------------------------------------------------------------------------

def steps_after_lr_change(buf: Any, grad: Any, lr_old: float, lr_new: float,
                          momentum: float) -> tuple[Any, Any]:
    """``(lr_new·(β·b + g), β·lr_old·b + lr_new·g)``: torch's and the velocity's step."""
    return lr_new * (momentum * buf + grad), momentum * (lr_old * buf) + lr_new * grad


def _number(x: Any) -> Any:
    """A returned step: a tensor's copy, a float (exact number types), else a type name."""
    if type(x) in TENSOR_TYPES:
        return x.detach().clone()
    if type(x) in (float, int, np.float64, np.float32):
        return float(x)
    return type_name(x)


def _steps_observe(run: Run) -> Any:
    ts, vs = pair(run.result)
    tensors = type(run.case.args[0]) is _TENSOR
    return [_number(ts), _number(vs),
            type(ts) is _TENSOR and type(vs) is _TENSOR if tensors else None,
            _number(run.args[0]), _number(run.args[1])]     # buf and grad are not modified


def _steps_contract(got: Run, expected: Run) -> str | None:
    name = "steps_after_lr_change"
    message = _unpack_pair(got.result, name, "torch_step, velocity_step")
    if message:
        return message
    b, g = got.case.args[:2]
    if type(b) is _TENSOR and not (torch.equal(got.args[0], b) and torch.equal(got.args[1], g)):
        return (f"`{name}` changed buf or grad in place.\n  Diagnosis: compute new "
                "values, don't update the inputs.")
    for what, value in zip(("torch_step", "velocity_step"), got.result):
        if value is None or type(value) is bool or not isinstance(
                value, (int, float, np.floating, _TENSOR)):
            return (f"{what} must be a number (or a tensor for tensor inputs), got "
                    f"{type(value).__name__}.")
        if type(b) is _TENSOR and (type(value) not in TENSOR_TYPES or value.shape != b.shape):
            return (f"{what} must be a tensor of shape {tuple(b.shape)} for tensor "
                    f"inputs, got {fmt(value)}.")
    return None


def _steps_swapped(got: Run, expected: Run) -> str | None:
    (ts, vs), (exp_torch, exp_vel) = got.result, expected.result
    if _close(ts, exp_vel) and _close(vs, exp_torch) and not _close(exp_torch, exp_vel):
        return (f"your two steps are swapped (torch_step={fmt(ts)}, velocity_step="
                f"{fmt(vs)}).\n  Diagnosis: torch multiplies the WHOLE new buffer by the "
                "new lr, lr_new·(β·b + g); the velocity keeps the old lr inside, "
                "β·lr_old·b + lr_new·g.")
    if _close(ts, -exp_torch) and _close(vs, -exp_vel) \
            and not _close(exp_torch, 0 * exp_torch):
        return ("both steps have the wrong sign.\n  Diagnosis: return the displacement "
                "θ_old − θ_new (what is subtracted from θ), lr_new·(β·b + g) and "
                "β·lr_old·b + lr_new·g.")
    return None


def _steps_parts(got: Run, expected: Run) -> str | None:
    """A wrong torch step, else a wrong velocity step: named, with its diagnosis."""
    for index, what in enumerate(("torch_step", "velocity_step")):
        if not _close(got.result[index], expected.result[index]):
            raise _mismatch(f"{got.case.name}, {what}", expected.result[index],
                            got.result[index],
                            _part_diagnosis(STEPS_AFTER_LR_CHANGE, got, expected,
                                            lambda obs, n=index + 1: obs[:n]))
    return None


def _steps_hidden(rng: np.random.Generator) -> Iterator[Case]:
    def lr() -> float:
        return float(rng.uniform(0.001, 0.3))
    same = lr()
    hypers = [("random lrs", lr(), lr(), float(rng.uniform(0.0, 0.99))) for _ in range(4)]
    hypers += [("lr unchanged", same, same, float(rng.uniform(0.0, 0.99))),
               ("lr_new = 0", lr(), 0.0, float(rng.uniform(0.0, 0.99))),
               ("momentum 0", lr(), lr(), 0.0)]
    old = lr()
    hypers += [("lr decay", old, old * float(rng.uniform(0.01, 0.5)),
                float(rng.uniform(0.5, 0.99))),
               ("warm-up", old / 20, old * float(rng.uniform(0.5, 1.0)),
                float(rng.uniform(0.5, 0.99)))]
    for label, lr0, lr1, beta in hypers:
        shape = _shape(rng)
        yield Case(f"{label}, random tensors", (
            torch.tensor(np.asarray(rng.standard_normal(shape)), dtype=_F64),
            torch.tensor(np.asarray(rng.standard_normal(shape)), dtype=_F64), lr0, lr1, beta))


def _torch_step_mistake(step: Callable[..., Any]) -> Callable[..., Any]:
    def steps_after_lr_change(buf, grad, lr_old, lr_new, momentum):
        return step(buf, grad, lr_old, lr_new, momentum), \
            momentum * (lr_old * buf) + lr_new * grad
    return steps_after_lr_change


def _velocity_mistake(step: Callable[..., Any]) -> Callable[..., Any]:
    def steps_after_lr_change(buf, grad, lr_old, lr_new, momentum):
        return lr_new * (momentum * buf + grad), step(buf, grad, lr_old, lr_new, momentum)
    return steps_after_lr_change


STEPS_AFTER_LR_CHANGE = Exercise(
    grade_id="test_steps_after_lr_change",
    name="steps_after_lr_change",
    reference=steps_after_lr_change,
    cases=[
        Case("buf=2.0, grad=1.0, lr 0.1 -> 0.05, momentum=0.9", (2.0, 1.0, 0.1, 0.05, 0.9)),
        Case("buf=-4.0, grad=3.0, lr 0.01 -> 0.1 (warm-up), momentum=0.8",
             (-4.0, 3.0, 0.01, 0.1, 0.8)),
        Case("buf=1.5, grad=-0.5, lr unchanged 0.2, momentum=0.9", (1.5, -0.5, 0.2, 0.2, 0.9)),
        Case("tensors, lr 0.1 -> 0.01, momentum=0.5",
             (torch.tensor([1.0, -2.0, 0.5], dtype=_F64),
              torch.tensor([0.5, 0.5, -1.0], dtype=_F64), 0.1, 0.01, 0.5)),
    ],
    observe=_steps_observe,
    passed="steps_after_lr_change: 4 cases (lr decay, warm-up, unchanged lr, tensors) "
           "match lr_new·(βb + g) for torch and β·lr_old·b + lr_new·g for the velocity "
           "convention",
    hidden=_steps_hidden,
    rtol=1e-9, atol=1e-12,
    rules=[_steps_contract],
    after=[_steps_swapped, _steps_parts],
    mistakes=[
        Mistake("torch_step_old_lr",
                "torch reads lr from param_groups at every step and multiplies the "
                "whole new buffer by it: use lr_new, lr_new·(β·b + g).",
                _torch_step_mistake(lambda b, g, lr0, lr1, m: lr0 * (m * b + g))),
        Mistake("torch_step_old_buffer",
                "the torch step uses the NEW buffer β·b + g, not the old one: "
                "lr_new·(β·b + g).",
                _torch_step_mistake(lambda b, g, lr0, lr1, m: lr1 * b)),
        Mistake("torch_step_is_buffer",
                "you returned the new buffer, not the step: multiply it by lr_new.",
                _torch_step_mistake(lambda b, g, lr0, lr1, m: m * b + g)),
        Mistake("torch_step_velocity_formula",
                "torch scales the old buffer by the new lr too: lr_new·(β·b + g), not "
                "β·lr_old·b + lr_new·g.",
                _torch_step_mistake(lambda b, g, lr0, lr1, m: m * (lr0 * b) + lr1 * g)),
        Mistake("velocity_not_converted",
                "you used the torch buffer b as the velocity. Convert first: with a "
                "constant lr_old so far, v = lr_old·b; then v_new = β·v + lr_new·g.",
                _velocity_mistake(lambda b, g, lr0, lr1, m: m * b + lr1 * g)),
        Mistake("velocity_converted_with_new_lr",
                "you converted the buffer with the new lr (v = lr_new·b): the velocity "
                "was accumulated with lr_old, v = lr_old·b, so v_new = β·lr_old·b + "
                "lr_new·g.",
                _velocity_mistake(lambda b, g, lr0, lr1, m: lr1 * (m * b + g))),
        Mistake("velocity_gradient_old_lr",
                "the new gradient enters the velocity with the NEW lr: v_new = "
                "β·lr_old·b + lr_new·g.",
                _velocity_mistake(lambda b, g, lr0, lr1, m: lr0 * (m * b + g))),
        Mistake("velocity_momentum_missing",
                "you forgot the momentum factor on the old velocity: v_new = β·v + "
                "lr_new·g with v = lr_old·b.",
                _velocity_mistake(lambda b, g, lr0, lr1, m: lr0 * b + lr1 * g)),
    ],
    forbidden=FORBIDDEN,
)


# --------------------------------------------------------------------------
# Predict, then run
# --------------------------------------------------------------------------

#: How a zero-started run compares with torch.optim.SGD (the choices, in the lesson's words).
SAME_RUN = ("bit-identical (torch.equal)", "close, but not bit-identical",
            "visibly different trajectories")


def _zero_start_vs_torch(dampening: float) -> str:
    """Which of :data:`SAME_RUN` a zero-started buffer gives against
    torch.optim.SGD: 20 steps on the κ = 25 valley, lr = 0.04, momentum = 0.7."""
    w0 = torch.tensor([-1.8, 0.6], dtype=_F64)
    zeros = momentum_trajectory(_F25.grad, w0, 0.04, 0.7, 20, dampening=dampening,
                                first_buffer="zeros")
    reference = torch_sgd_trajectory(_F25.grad, w0, 0.04, 0.7, 20, dampening=dampening)
    if torch.equal(zeros, reference):
        return SAME_RUN[0]
    return SAME_RUN[1] if _close(zeros, reference, rtol=1e-12, atol=1e-12) else SAME_RUN[2]


PREDICT_ZERO_START = Question(
    grade_id="test_predict_zero_start",
    name="predict_zero_start",
    answer=lambda: _zero_start_vs_torch(0.0),
    choices=SAME_RUN,
    why=("with τ = 0 the zero buffer's first update is β·0 + 1·g, and in floating point "
         "β·0 = 0 and 0 + 1·g = g exactly: the same buffer as torch's copy, and every "
         "later step applies the same operations to the same numbers. Only with τ ≠ 0 "
         "does the zero start differ: its first buffer is (1 − τ)·g."),
)


def _step_ratio_after(n_steps: int, momentum: float) -> float:
    """torch.optim.SGD on a constant gradient: step ``n_steps`` over the plain step lr·g."""
    lr, g = 0.01, 2.0
    h = torch_sgd_trajectory(lambda w: torch.full_like(w, g), torch.zeros(1, dtype=_F64),
                             lr, momentum, n_steps)
    return float((h[-2] - h[-1]).item() / (lr * g))


PREDICT_TERMINAL_STEP = Question(
    grade_id="test_predict_terminal_step",
    name="predict_terminal_step",
    answer=lambda: round(_step_ratio_after(100, 0.9), 4),
    rtol=0.03,
    unit="times the plain step",
    why=("after t steps of a constant gradient the buffer is g·(1 + β + … + β^(t−1)) = "
         "g·(1 − β^t)/(1 − β). At β = 0.9 and t = 100, β^t ≈ 3·10⁻⁵, so the step is "
         "1/(1 − 0.9) = 10 times lr·g, to four digits 9.9997 (it tends to 10 and never "
         "quite reaches it)."),
)

#: The graded cells, in notebook order.
EXERCISES = [PREDICT_ZERO_START, MOMENTUM_STEP, HEAVY_BALL, PREDICT_TERMINAL_STEP,
             EFFECTIVE_LR, STEPS_AFTER_LR_CHANGE]
