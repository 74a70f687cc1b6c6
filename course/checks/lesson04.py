r"""Checks for lesson 04-momentum.

The exercises implement heavy-ball momentum in torch's convention,

$$b_1 = g_1, \qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, g_t, \qquad
\theta_t = \theta_{t-1} - \gamma_t\, b_t,$$

and compare it with the "velocity" convention $v_t = \mu v_{t-1} + \gamma_t
g_t$, $\theta_t = \theta_{t-1} - v_t$:

- :func:`check_momentum_step` -- one step on tensors, ``(new_p, new_buf)``;
  the buffer is a *clone* of the gradient on the first step (no dampening).
- :func:`check_heavy_ball` -- the whole trajectory, compared with
  ``torch.optim.SGD`` driven on the same function.
- :func:`check_effective_lr` -- the terminal step size
  $\gamma (1 - \tau) / (1 - \mu)$ for a constant gradient.
- :func:`check_steps_after_lr_change` -- the first step of both conventions
  after the learning rate changes.

When a value is wrong each check compares it with the classic mistakes (a
zero-initialised buffer, dampening on the first step, the learning rate
inside the buffer, a buffer that aliases the gradient, a flipped sign, ...)
and says which one it is and how to fix it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from course.checks._common import (
    CheckFailure,
    call,
    close,
    fmt,
    mismatch,
    passed,
    require_function,
)
from course.functions import make_quadratic, rosenbrock_grad
from course.momentum import torch_momentum_step, torch_sgd_trajectory

__all__ = [
    "check_momentum_step",
    "check_heavy_ball",
    "check_effective_lr",
    "check_steps_after_lr_change",
]


def _which(actual: Any, candidates: list[tuple[str, Any]], expected: Any,
           rtol: float = 1e-6, atol: float = 1e-9) -> str | None:
    """The first diagnosis whose wrong value matches ``actual`` (and differs
    from ``expected``), or None."""
    for hint, value in candidates:
        if value is None:
            continue
        if (close(actual, value, rtol=rtol, atol=atol)
                and not close(value, expected, rtol=rtol, atol=atol)):
            return hint
    return None


def _call(fn: Callable[..., Any], name: str, case: str, *args: Any) -> Any:
    """:func:`call`, but a NotImplementedError raised by ANOTHER unfinished
    exercise (``heavy_ball`` calling a stub ``momentum_step``) is named."""
    try:
        return call(fn, name, case, *args)
    except CheckFailure as err:
        origin = err.__context__
        if isinstance(origin, NotImplementedError) and origin.__traceback__:
            tb = origin.__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            inner = tb.tb_frame.f_code.co_name
            if inner not in (name, getattr(fn, "__name__", name), "<lambda>"):
                raise CheckFailure(
                    f"`{name}` calls `{inner}`, which is not implemented yet: "
                    f"finish `{inner}` first (run its cell and its check), then "
                    "run this check again.") from None
        raise


def _same_storage(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors share memory (``a is b``, a view or ``detach()``)."""
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except RuntimeError:  # pragma: no cover - exotic tensors
        return a is b


def _mentions_zeros(fn: Callable[..., Any]) -> bool:
    """Whether the learner's source creates a zero tensor (a zero buffer)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return "zeros" in source


# --------------------------------------------------------------------------
# Exercise 4.1: momentum_step
# --------------------------------------------------------------------------

_ZERO_START = (
    "your first momentum step started from a zero buffer: b = μ·0 + (1 − τ)·g "
    "= (1 − τ)·g. Torch does not start from zeros: on a parameter's first "
    "step the buffer IS the gradient, `new_buf = grad.clone()` (no dampening), "
    "and only from the second step on b = μ·b + (1 − τ)·g.")
_FIRST_DAMPENED = (
    "you applied dampening on the first step: b = (1 − τ)·g (starting from a "
    "zero buffer gives the same, μ·0 + (1 − τ)·g). Torch copies the gradient "
    "unchanged on a parameter's first step, `new_buf = grad.clone()`; "
    "dampening only applies from the second step on, b = μ·b + (1 − τ)·g.")
_LR_IN_BUFFER = (
    "the learning rate is inside your buffer (the 'velocity' convention "
    "v = μ·v + lr·g, p − v). Torch keeps lr outside: b = μ·b + (1 − τ)·g, "
    "then new_p = p − lr·b. The buffer holds gradients, not steps.")
_SIGN_BUFFER = (
    "the momentum sign is wrong: torch ADDS the old buffer and the gradient, "
    "b = μ·b + (1 − τ)·g (the minus sign only appears in p − lr·b). "
    "The CS231n form v = μ·v − lr·g, p + v uses the opposite sign everywhere.")
_ALIAS = (
    "the buffer you returned shares memory with grad (`new_buf = grad` or "
    "`grad.detach()`). Then `zero_grad()` or the next `backward()` writes into "
    "your momentum, and updating the buffer in place overwrites p.grad. Make a "
    "copy: `new_buf = grad.clone()`.")


def _buffer_candidates(p: Tensor, g: Tensor, buf: Tensor | None, lr: float,
                       mu: float, tau: float) -> list[tuple[str, Any]]:
    """Wrong buffers of the classic mistakes, most specific first."""
    if buf is None:
        return [
            ("your buffer is (1 − τ)·g", (1 - tau) * g),  # replaced by caller
            (_LR_IN_BUFFER, lr * g),
            (_LR_IN_BUFFER + " (And on the first step torch skips dampening.)",
             lr * (1 - tau) * g),
            (_SIGN_BUFFER, -g),
            (_SIGN_BUFFER, -(1 - tau) * g),
            ("the buffer is still all zeros: on a parameter's first step torch "
             "sets the buffer to a copy of the gradient, `new_buf = grad.clone()`.",
             torch.zeros_like(g)),
        ]
    return [
        (_LR_IN_BUFFER, mu * buf + lr * (1 - tau) * g),
        (_LR_IN_BUFFER, mu * buf + lr * g),
        (_SIGN_BUFFER, -mu * buf + (1 - tau) * g),
        (_SIGN_BUFFER, mu * buf - (1 - tau) * g),
        (_SIGN_BUFFER, -mu * buf - (1 - tau) * g),
        ("you multiplied the gradient by the dampening τ; torch multiplies it "
         "by (1 − τ): b = μ·b + (1 − dampening)·g.", mu * buf + tau * g),
        ("you ignored dampening: from the second step on torch scales the "
         "gradient by (1 − τ), b = μ·b + (1 − dampening)·g.", mu * buf + g),
        ("you scaled the gradient by (1 − momentum), an exponential moving "
         "average. Torch scales it by (1 − dampening): b = μ·b + (1 − τ)·g "
         "(with dampening = 0 it adds the full gradient).",
         mu * buf + (1 - mu) * g),
        ("you restarted the buffer from the gradient although a buffer was "
         "given: `grad.clone()` is only for the first step (buf is None); "
         "afterwards b = μ·b + (1 − τ)·g.", g),
        ("you ignored the old buffer: b = μ·b + (1 − τ)·g keeps μ times the "
         "previous buffer.", (1 - tau) * g),
        ("you returned the old buffer unchanged: update it, "
         "b = μ·b + (1 − τ)·g.", buf),
        ("you forgot the momentum factor on the old buffer: "
         "b = μ·b + (1 − τ)·g, not b + (1 − τ)·g.", buf + (1 - tau) * g),
    ]


def _param_candidates(p: Tensor, g: Tensor, buf: Tensor | None,
                      new_buf: Tensor, lr: float) -> list[tuple[str, Any]]:
    """Wrong parameters of the classic mistakes (the buffer being right)."""
    out = [
        ("your update moved p uphill: new_p = p − lr·new_buf (subtract), "
         "not p + lr·new_buf.", p + lr * new_buf),
        ("you stepped with the raw gradient: the update uses the NEW buffer, "
         "new_p = p − lr·new_buf.", p - lr * g),
        ("you forgot the learning rate: new_p = p − lr·new_buf.", p - new_buf),
        ("p did not move: return new_p = p − lr·new_buf.", p),
    ]
    if buf is not None:
        out.insert(2, ("you stepped with the OLD buffer: first update the "
                       "buffer, then new_p = p − lr·new_buf.", p - lr * buf))
    return out


def _momentum_cases() -> list[tuple[str, Tensor, Tensor, Tensor | None, float, float, float]]:
    f32 = torch.float32
    return [
        ("first step (buf=None), lr=0.1, momentum=0.9",
         torch.tensor([1.0, -2.0, 0.5], dtype=f32),
         torch.tensor([0.5, -1.0, 2.0], dtype=f32), None, 0.1, 0.9, 0.0),
        ("first step (buf=None), lr=0.05, momentum=0.9, dampening=0.5",
         torch.tensor([0.3, 1.5], dtype=f32),
         torch.tensor([2.0, -4.0], dtype=f32), None, 0.05, 0.9, 0.5),
        ("later step, lr=0.05, momentum=0.9",
         torch.tensor([1.0, -2.0, 0.5], dtype=f32),
         torch.tensor([0.5, -1.0, 2.0], dtype=f32),
         torch.tensor([1.5, 2.0, -1.0], dtype=f32), 0.05, 0.9, 0.0),
        ("later step, lr=0.15, momentum=0.8, dampening=0.3",
         torch.tensor([2.0, 0.25, -1.0], dtype=f32),
         torch.tensor([-1.0, 3.0, 0.5], dtype=f32),
         torch.tensor([0.5, 1.0, 4.0], dtype=f32), 0.15, 0.8, 0.3),
        ("float64 2x2 parameter, later step, lr=0.03, momentum=0.5, dampening=0.1",
         torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64),
         torch.tensor([[4.0, -2.0], [1.0, 6.0]], dtype=torch.float64),
         torch.tensor([[-1.0, 0.5], [2.0, 3.0]], dtype=torch.float64), 0.03, 0.5, 0.1),
    ]


def _unpack_pair(out: Any, name: str, case: str, what: str) -> tuple[Any, Any]:
    """Check that the learner returned a pair and split it."""
    if out is None:
        raise CheckFailure(
            f"{case}: `{name}` returned None.\n  Diagnosis: did you forget "
            f"`return {what}`?")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise CheckFailure(
            f"{case}: `{name}` must return a pair {what}, got "
            f"{type(out).__name__} {fmt(out)}.\n  Diagnosis: end with "
            f"`return {what}` (two values).")
    return out[0], out[1]


def check_momentum_step(momentum_step: Callable[..., Any]) -> None:
    r"""Check ``momentum_step(p, grad, buf, lr, momentum, dampening=0.0)``.

    Torch's rule: ``new_buf = grad.clone()`` if ``buf is None``, else
    $b \leftarrow \mu b + (1 - \tau) g$; then ``new_p = p - lr * new_buf``.
    """
    name = "momentum_step"
    require_function(momentum_step, name)
    exact = True
    cases = _momentum_cases()
    for label, p, g, buf, lr, mu, tau in cases:
        case = f"case '{label}'"
        p_in, g_in = p.clone(), g.clone()
        buf_in = None if buf is None else buf.clone()
        out = call(momentum_step, name, case, p_in, g_in, buf_in, lr, mu, tau)
        new_p, new_buf = _unpack_pair(out, name, case, "new_p, new_buf")
        if new_buf is None:
            raise CheckFailure(
                f"{case}: the returned buffer is None.\n  Diagnosis: on the "
                "first step (buf is None) create the buffer as a copy of the "
                "gradient, `new_buf = grad.clone()`, and return it.")
        for what, value in (("new_p", new_p), ("new_buf", new_buf)):
            if not isinstance(value, Tensor):
                raise CheckFailure(
                    f"{case}: {what} must be a torch.Tensor, got "
                    f"{type(value).__name__} {fmt(value)}.\n  Diagnosis: compute "
                    "with tensor operations on p, grad and buf (no .item(), no "
                    "numpy).")
            if value.shape != p.shape:
                raise CheckFailure(
                    f"{case}: {what} has shape {tuple(value.shape)}, expected "
                    f"{tuple(p.shape)} (the shape of p).")
            if value.dtype != p.dtype:
                raise CheckFailure(
                    f"{case}: {what} has dtype {value.dtype} but p is {p.dtype}."
                    "\n  Diagnosis: keep the parameter's dtype: multiply tensors "
                    "by Python floats, don't build new tensors with a default "
                    "dtype.")
        if not torch.equal(g_in, g):
            raise CheckFailure(
                f"{case}: `{name}` changed grad in place (it is now "
                f"{fmt(g_in)}).\n  Diagnosis: torch never modifies p.grad in "
                "step(). Update the buffer, not the gradient: on the first step "
                "`new_buf = grad.clone()`, later `buf.mul_(momentum).add_(grad, "
                "alpha=1 - dampening)`.")
        exp_p, exp_buf = torch_momentum_step(p, g, buf, lr=lr, momentum=mu,
                                             dampening=tau)
        if not close(new_buf, exp_buf):
            candidates = _buffer_candidates(p, g, buf, lr, mu, tau)
            if buf is None and tau != 0:
                hint = _ZERO_START if _mentions_zeros(momentum_step) else _FIRST_DAMPENED
                candidates[0] = (hint, (1 - tau) * g)
            raise mismatch(f"{case}, new_buf", exp_buf, new_buf,
                           _which(new_buf, candidates, exp_buf))
        if buf is None and _same_storage(new_buf, g_in):
            raise CheckFailure(f"{case}: new_buf aliases grad.\n  Diagnosis: {_ALIAS}")
        if not close(new_p, exp_p):
            raise mismatch(f"{case}, new_p", exp_p, new_p,
                           _which(new_p, _param_candidates(p, g, buf, exp_buf, lr),
                                  exp_p))
        exact = exact and torch.equal(new_p, exp_p) and torch.equal(new_buf, exp_buf)
    how = ("bit for bit, as torch.optim.SGD" if exact else
           "to float rounding (not bit for bit: lesson 5 shows why)")
    passed(f"{name}: {len(cases)} cases (first steps with and without dampening, "
           f"later steps, float32/float64) match torch's rule {how}; the "
           "first buffer is a copy of grad")


# --------------------------------------------------------------------------
# Exercise 4.2: heavy_ball
# --------------------------------------------------------------------------

def _variant_trajectory(f_grad: Callable[[Tensor], Tensor], w0: Tensor, lr: float,
                        mu: float, n_steps: int, tau: float, variant: str) -> Tensor:
    """Trajectories of classic mistakes (float64, plain arithmetic)."""
    p = w0.detach().to(torch.float64).clone()
    buf: Tensor | None = None
    history = [p.clone()]
    for _ in range(n_steps):
        g = torch.as_tensor(f_grad(p.clone()), dtype=torch.float64)
        if variant == "gd":
            step = g
        elif variant == "gd_damped":
            step = (1 - tau) * g
        elif variant == "zero_start":
            buf = mu * (torch.zeros_like(g) if buf is None else buf) + (1 - tau) * g
            step = buf
        elif variant == "uphill":
            buf = g.clone() if buf is None else mu * buf + (1 - tau) * g
            step = -buf
        elif variant == "no_dampening":
            buf = g.clone() if buf is None else mu * buf + g
            step = buf
        else:  # pragma: no cover
            raise ValueError(variant)
        p = p - lr * step
        history.append(p.clone())
    return torch.stack(history)


_HEAVY_BALL_MISTAKES = {
    "gd": ("your trajectory is plain gradient descent: the buffer is reset "
           "every step (or never passed from one step to the next). Create "
           "buf = None BEFORE the loop and keep the buffer returned by each "
           "step: `w, buf = momentum_step(w, g, buf, lr, momentum, dampening)`."),
    "gd_damped": ("your trajectory is gradient descent with lr·(1 − τ): the "
                  "buffer starts from zero again on every step. Create buf = "
                  "None before the loop and carry it from step to step."),
    "zero_start": ("your first momentum step started from a zero buffer, so "
                   "the first step was scaled by (1 − dampening). Torch sets "
                   "the buffer to a copy of the first gradient (no dampening): "
                   "start with buf = None and let momentum_step clone grad."),
    "uphill": ("your iterates moved uphill: subtract the step, "
               "w − lr·b."),
    "no_dampening": ("you ignored dampening: from the second step on the "
                     "gradient enters the buffer as (1 − τ)·g. Pass dampening "
                     "on to momentum_step."),
}


def _heavy_ball_cases() -> list[tuple[str, Callable[[Tensor], Tensor], Tensor,
                                      float, float, int, float]]:
    f25 = make_quadratic(2, 25.0, rotate=False)
    f10 = make_quadratic(2, 10.0, seed=1)
    return [
        ("κ=25 quadratic, w0=(-1.8, 0.6), lr=0.03, momentum=0.7, 15 steps",
         f25.grad, torch.tensor([-1.8, 0.6], dtype=torch.float64), 0.03, 0.7, 15, 0.0),
        ("rotated κ=10 quadratic, lr=0.05, momentum=0.9, dampening=0.5, 12 steps",
         f10.grad, torch.tensor([1.0, -1.5], dtype=torch.float64), 0.05, 0.9, 12, 0.5),
        ("Rosenbrock, float32 w0=(-1.2, 1.0), lr=0.001, momentum=0.9, 10 steps",
         rosenbrock_grad, torch.tensor([-1.2, 1.0], dtype=torch.float32), 1e-3, 0.9, 10, 0.0),
        ("κ=25 quadratic, n_steps=0",
         f25.grad, torch.tensor([0.5, 0.5], dtype=torch.float64), 0.04, 0.7, 0, 0.0),
    ]


def _as_history(out: Any) -> Tensor | None:
    """The learner's history as a tensor (numpy arrays accepted), or None."""
    if isinstance(out, Tensor):
        return out.detach()
    if isinstance(out, np.ndarray) and out.dtype.kind == "f":
        return torch.from_numpy(out)
    return None


def check_heavy_ball(heavy_ball: Callable[..., Any]) -> None:
    r"""Check ``heavy_ball(f_grad, w0, lr, momentum, n_steps, dampening=0.0)``
    against ``torch.optim.SGD`` driven on the same function."""
    name = "heavy_ball"
    require_function(heavy_ball, name)
    exact = True
    cases = _heavy_ball_cases()
    for label, f_grad, w0, lr, mu, n_steps, tau in cases:
        case = f"case '{label}'"
        w0_in = w0.clone()
        out = _call(heavy_ball, name, case, f_grad, w0_in, lr, mu, n_steps, tau)
        if out is None:
            raise CheckFailure(
                f"{case}: `{name}` returned None.\n  Diagnosis: did you forget "
                "`return torch.stack(history)` after the loop?")
        if isinstance(out, (list, tuple)):
            raise CheckFailure(
                f"{case}: `{name}` returned a {type(out).__name__}; return one "
                "tensor of shape (n_steps + 1, *w0.shape).\n  Diagnosis: collect "
                "the points in a list and `return torch.stack(history)`.")
        history = _as_history(out)
        if history is None:
            raise CheckFailure(
                f"{case}: expected a tensor of shape (n_steps + 1, *w0.shape), "
                f"got {type(out).__name__} {fmt(out)}.")
        expected = torch_sgd_trajectory(f_grad, w0, lr, mu, n_steps, dampening=tau)
        if tuple(history.shape) != tuple(expected.shape):
            raise CheckFailure(_shape_message(case, history, expected, n_steps))
        if history.dtype != w0.dtype:
            raise CheckFailure(
                f"{case}: your history has dtype {history.dtype} but w0 is "
                f"{w0.dtype}.\n  Diagnosis: keep w0's dtype (torch.optim.SGD "
                "does): start from w = w0.clone() and stack the points; don't "
                "preallocate with torch.zeros(...) in the default dtype.")
        if not torch.equal(w0_in, w0):
            raise CheckFailure(
                f"{case}: `{name}` changed the caller's w0 in place (it is now "
                f"{fmt(w0_in)}).\n  Diagnosis: start from a copy, "
                "w = w0.clone().")
        rtol, atol = (1e-9, 1e-12) if w0.dtype == torch.float64 else (1e-5, 1e-6)
        if not close(history, expected, rtol=rtol, atol=atol):
            raise _heavy_ball_mismatch(case, history, expected, f_grad, w0, lr,
                                       mu, n_steps, tau, rtol, atol)
        exact = exact and torch.equal(history, expected)
    how = ("bit for bit" if exact else
           "to float rounding (not bit for bit: lesson 5 shows why)")
    passed(f"{name}: {len(cases)} runs (quadratics, Rosenbrock, dampening, "
           f"float32, n_steps=0) equal torch.optim.SGD's trajectory {how}; "
           "w0 is left unchanged")


def _shape_message(case: str, history: Tensor, expected: Tensor, n_steps: int) -> str:
    got = tuple(history.shape)
    want = tuple(expected.shape)
    msg = f"{case}: expected a history of shape {want}, got {got}."
    if len(got) == len(want) and got[1:] == want[1:]:
        if (got[0] == n_steps and n_steps > 0
                and close(history, expected[:-1], rtol=1e-5, atol=1e-6)
                and not close(history, expected[1:], rtol=1e-5, atol=1e-6)):
            hint = ("the last step is missing: loop `for _ in range(n_steps)` "
                    "and append the new point after every step.")
        elif got[0] == n_steps and n_steps > 0:
            hint = ("the starting point is missing: history[0] must be w0, "
                    "so start with history = [w.clone()] and append one point "
                    "per step (n_steps + 1 rows).")
        elif got[0] == n_steps + 2:
            hint = ("one row too many: start with [w0] and append once per "
                    "step, for n_steps steps.")
        else:
            hint = "one row per point: w0, then one after each of the n_steps steps."
        msg += f"\n  Diagnosis: {hint}"
    return msg


def _heavy_ball_mismatch(case: str, history: Tensor, expected: Tensor,
                         f_grad: Callable[[Tensor], Tensor], w0: Tensor,
                         lr: float, mu: float, n_steps: int, tau: float,
                         rtol: float, atol: float) -> CheckFailure:
    """Name the classic mistake behind a wrong trajectory, if we recognise it."""
    hint = None
    rows_equal = all(torch.equal(row, history[-1]) for row in history)
    if len(history) > 2 and rows_equal:
        hint = ("every row of your history is the same point (the last one): "
                "you appended the tensor w and then changed it in place "
                "(w -= ..., w.add_(...)). Append a copy, "
                "`history.append(w.clone())`.")
    elif not close(history[0], w0, rtol=rtol, atol=atol):
        hint = "row 0 of the history must be the starting point w0."
    else:
        for variant, text in _HEAVY_BALL_MISTAKES.items():
            wrong = _variant_trajectory(f_grad, w0, lr, mu, n_steps, tau, variant)
            if (close(history, wrong, rtol=1e-5, atol=1e-6)
                    and not close(wrong, expected, rtol=1e-5, atol=1e-6)):
                hint = text
                break
    ok = torch.isclose(history.to(torch.float64), expected.to(torch.float64),
                       rtol=rtol, atol=atol, equal_nan=True)
    bad_rows = (~ok).reshape(len(history), -1).any(dim=1).nonzero()
    t = int(bad_rows[0, 0]) if len(bad_rows) else 0
    return mismatch(f"{case}, row {t} (w_{t})", expected[t], history[t], hint)


# --------------------------------------------------------------------------
# Exercise 4.3: effective_lr
# --------------------------------------------------------------------------

def check_effective_lr(effective_lr: Callable[..., Any]) -> None:
    r"""Check ``effective_lr(lr, momentum, dampening=0.0)``
    $= \gamma (1 - \tau) / (1 - \mu)$."""
    name = "effective_lr"
    require_function(effective_lr, name)
    cases = [(0.1, 0.9, 0.0), (0.01, 0.0, 0.0), (0.02, 0.5, 0.0),
             (0.05, 0.5, 0.5), (0.1, 0.9, 0.9), (0.2, 0.75, 0.25)]
    for lr, mu, tau in cases:
        case = f"case 'lr={lr}, momentum={mu}, dampening={tau}'"
        out = call(effective_lr, name, case, lr, mu, tau)
        if out is None:
            raise CheckFailure(f"{case}: `{name}` returned None.\n  Diagnosis: "
                               "did you forget `return`?")
        if isinstance(out, Tensor) and out.numel() == 1:
            out = out.item()
        if isinstance(out, bool) or not isinstance(out, (int, float, np.floating)):
            raise CheckFailure(f"{case}: expected a number, got "
                               f"{type(out).__name__} {fmt(out)}.")
        expected = lr * (1 - tau) / (1 - mu)
        if not close(float(out), expected):
            candidates = [
                ("you forgot dampening: in the steady state each gradient enters "
                 "the buffer as (1 − τ)·g, so the step is lr·(1 − τ)/(1 − μ).",
                 lr / (1 - mu)),
                ("you multiplied by (1 − μ) instead of dividing: the buffer sums "
                 "g·(1 + μ + μ² + ...) = g/(1 − μ), which is LARGER than g.",
                 lr * (1 - tau) * (1 - mu)),
                ("you multiplied by (1 − μ) instead of dividing (and forgot "
                 "dampening): the sum 1 + μ + μ² + ... is 1/(1 − μ).",
                 lr * (1 - mu)),
                ("the geometric series 1 + μ + μ² + ... sums to 1/(1 − μ), "
                 "not 1/(1 + μ).", lr * (1 - tau) / (1 + mu)),
                ("you left out the newest gradient: the buffer is "
                 "(1 − τ)·g·(1 + μ + μ² + ...), which starts at 1, not at μ.",
                 lr * (1 - tau) * mu / (1 - mu)),
                ("you used dampening τ where torch uses (1 − τ).",
                 lr * tau / (1 - mu)),
                ("you divided by (1 − τ): dampening shrinks the step, "
                 "lr·(1 − τ)/(1 − μ).", lr / ((1 - tau) * (1 - mu))),
            ]
            raise mismatch(case, expected, float(out),
                           _which(float(out), candidates, expected))
    passed(f"{name}: {len(cases)} cases match lr·(1 − dampening)/(1 − momentum), "
           "the step a constant gradient settles to")


# --------------------------------------------------------------------------
# Exercise 4.4: steps_after_lr_change
# --------------------------------------------------------------------------

def check_steps_after_lr_change(steps_after_lr_change: Callable[..., Any]) -> None:
    r"""Check ``steps_after_lr_change(buf, grad, lr_old, lr_new, momentum)``
    returns ``(torch_step, velocity_step)``:

    $\gamma'(\mu b + g)$ and $\mu \gamma b + \gamma' g$.
    """
    name = "steps_after_lr_change"
    require_function(steps_after_lr_change, name)
    cases: list[tuple[str, Any, Any, float, float, float]] = [
        ("buf=2.0, grad=1.0, lr 0.1 -> 0.05, momentum=0.9", 2.0, 1.0, 0.1, 0.05, 0.9),
        ("buf=-4.0, grad=3.0, lr 0.01 -> 0.1 (warm-up), momentum=0.8",
         -4.0, 3.0, 0.01, 0.1, 0.8),
        ("buf=1.5, grad=-0.5, lr unchanged 0.2, momentum=0.9", 1.5, -0.5, 0.2, 0.2, 0.9),
        ("tensors, lr 0.1 -> 0.01, momentum=0.5",
         torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64),
         torch.tensor([0.5, 0.5, -1.0], dtype=torch.float64), 0.1, 0.01, 0.5),
    ]
    for label, b, g, lr0, lr1, mu in cases:
        case = f"case '{label}'"
        b_in = b.clone() if isinstance(b, Tensor) else b
        g_in = g.clone() if isinstance(g, Tensor) else g
        out = call(steps_after_lr_change, name, case, b_in, g_in, lr0, lr1, mu)
        torch_step, velocity_step = _unpack_pair(out, name, case,
                                                 "torch_step, velocity_step")
        if isinstance(b, Tensor) and not (torch.equal(b_in, b) and torch.equal(g_in, g)):
            raise CheckFailure(f"{case}: `{name}` changed buf or grad in place."
                               "\n  Diagnosis: compute new values, don't update "
                               "the inputs.")
        for what, value in (("torch_step", torch_step), ("velocity_step", velocity_step)):
            if value is None or (not isinstance(value, (int, float, np.floating, Tensor))
                                 or isinstance(value, bool)):
                raise CheckFailure(f"{case}: {what} must be a number (or a tensor "
                                   f"for tensor inputs), got {type(value).__name__}.")
            if isinstance(b, Tensor) and (not isinstance(value, Tensor)
                                          or value.shape != b.shape):
                raise CheckFailure(f"{case}: {what} must be a tensor of shape "
                                   f"{tuple(b.shape)} for tensor inputs, got "
                                   f"{fmt(value)}.")
        exp_torch = lr1 * (mu * b + g)
        exp_vel = mu * (lr0 * b) + lr1 * g
        swapped = close(torch_step, exp_vel) and close(velocity_step, exp_torch)
        if swapped and not close(exp_torch, exp_vel):
            raise CheckFailure(
                f"{case}: your two steps are swapped (torch_step={fmt(torch_step)}, "
                f"velocity_step={fmt(velocity_step)}).\n  Diagnosis: torch "
                "multiplies the WHOLE new buffer by the new lr, lr_new·(μ·b + g); "
                "the velocity keeps the old lr inside, μ·lr_old·b + lr_new·g.")
        negated = close(torch_step, -exp_torch) and close(velocity_step, -exp_vel)
        if negated and not close(exp_torch, 0 * exp_torch):
            raise CheckFailure(
                f"{case}: both steps have the wrong sign.\n  Diagnosis: return "
                "the displacement θ_old − θ_new (what is subtracted from θ), "
                "lr_new·(μ·b + g) and μ·lr_old·b + lr_new·g.")
        if not close(torch_step, exp_torch):
            raise mismatch(f"{case}, torch_step", exp_torch, torch_step, _which(
                torch_step, [
                    ("torch reads lr from param_groups at every step and "
                     "multiplies the whole new buffer by it: use lr_new, "
                     "lr_new·(μ·b + g).", lr0 * (mu * b + g)),
                    ("the torch step uses the NEW buffer μ·b + g, not the old "
                     "one: lr_new·(μ·b + g).", lr1 * b),
                    ("you returned the new buffer, not the step: multiply it "
                     "by lr_new.", mu * b + g),
                    ("torch scales the old buffer by the new lr too: "
                     "lr_new·(μ·b + g), not μ·lr_old·b + lr_new·g.", exp_vel),
                ], exp_torch))
        if not close(velocity_step, exp_vel):
            raise mismatch(f"{case}, velocity_step", exp_vel, velocity_step, _which(
                velocity_step, [
                    ("you used the torch buffer b as the velocity. Convert "
                     "first: with a constant lr_old so far, v = lr_old·b; then "
                     "v_new = μ·v + lr_new·g.", mu * b + lr1 * g),
                    ("you converted the buffer with the new lr (v = lr_new·b): "
                     "the velocity was accumulated with lr_old, v = lr_old·b, "
                     "so v_new = μ·lr_old·b + lr_new·g.", exp_torch),
                    ("the new gradient enters the velocity with the NEW lr: "
                     "v_new = μ·lr_old·b + lr_new·g.", lr0 * (mu * b + g)),
                    ("you forgot the momentum factor on the old velocity: "
                     "v_new = μ·v + lr_new·g with v = lr_old·b.",
                     lr0 * b + lr1 * g),
                ], exp_vel))
    passed(f"{name}: {len(cases)} cases (lr decay, warm-up, unchanged lr, "
           "tensors) match lr_new·(μb + g) for torch and μ·lr_old·b + lr_new·g "
           "for the velocity convention")
