"""Checks for lesson 03, stochastic gradient descent.

One check per exercise: ``minibatch_indices``, ``minibatch_gradient``,
``sgd_epoch`` and ``lr_schedule``. The expected values come from the reference
functions in :mod:`course.stochastic`. When an answer is wrong, the check tries
the known classic mistakes on the same case and names the one that matches.
No check changes the global random state: each case runs between a save and
a restore of ``torch.random.get_rng_state()``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from numbers import Real
from typing import Any, Callable, Iterator, Sequence

import torch

from course import stochastic as ref
from course.checks._common import (CheckFailure, call, close, mismatch, passed,
                                   require_function)

__all__ = ["check_minibatch_indices", "check_minibatch_gradient",
           "check_sgd_epoch", "check_lr_schedule"]

GLOBAL_RNG_HINT = (
    "you shuffled with the global random number generator (torch.randperm(n) "
    "without generator=, torch.manual_seed, torch.randint ...): use the generator "
    "passed in, torch.randperm(n, generator=generator), so the order depends only "
    "on its seed and no other code changes it.")


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #

class _RngWatch:
    """Whether the global torch RNG was used inside a :func:`_global_rng_watch`."""

    changed = False


@contextmanager
def _global_rng_watch() -> Iterator[_RngWatch]:
    """Record whether the global RNG state changed, then restore it."""
    state = torch.random.get_rng_state()
    watch = _RngWatch()
    try:
        yield watch
    finally:
        watch.changed = not torch.equal(state, torch.random.get_rng_state())
        torch.random.set_rng_state(state)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _state_after_randperm(n: int, seed: int, draws: int = 1) -> torch.Tensor:
    """The state of a generator seeded ``seed`` after ``draws`` permutations of n."""
    g = _generator(seed)
    for _ in range(draws):
        torch.randperm(n, generator=g)
    return g.get_state()


def _first_match(actual: Any, variants: Sequence[tuple[Any, str]],
                 rtol: float = 1e-6) -> str | None:
    """The hint of the first wrong-answer variant that ``actual`` reproduces."""
    for value, hint in variants:
        if value is not None and _close_pair(actual, value, rtol):
            return hint
    return None


def _close_pair(actual: Any, expected: Any, rtol: float) -> bool:
    """``close`` for single values and for ``(w, b)`` pairs."""
    if isinstance(expected, tuple):
        return (isinstance(actual, tuple) and len(actual) == len(expected)
                and all(close(a, e, rtol=rtol, atol=1e-9)
                        for a, e in zip(actual, expected)))
    return close(actual, expected, rtol=rtol, atol=1e-9)


def _regression(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64,
                ) -> tuple[torch.Tensor, ...]:
    """A small regression problem and a starting point (w, b) away from the fit."""
    g = _generator(1000 + seed)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    y = X @ torch.randn(d, generator=g, dtype=dtype) + 0.5 + 0.3 * torch.randn(
        n, generator=g, dtype=dtype)
    w = torch.randn(d, generator=g, dtype=dtype)
    b = torch.randn((), generator=g, dtype=dtype)
    return X, y, w, b


def _flat(pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``(w, b)`` as one vector ``[w..., b]`` for messages."""
    return torch.cat([pair[0].reshape(-1), pair[1].reshape(1)])


def _as_pair(result: Any, name: str, case: str, d: int, what: str) -> tuple[Any, Any]:
    """Check that ``result`` is a pair (vector of length d, scalar); return it."""
    if result is None:
        raise CheckFailure(f"{case}: `{name}` returned None: did you forget "
                           f"`return {what}`?")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailure(f"{case}: `{name}` must return a pair `{what}`, got "
                           f"{type(result).__name__}"
                           + (f" of length {len(result)}"
                              if isinstance(result, (tuple, list)) else "") + ".")
    first, second = result
    if not isinstance(first, torch.Tensor) or tuple(first.shape) != (d,):
        shape = (f"shape {tuple(first.shape)}" if isinstance(first, torch.Tensor)
                 else type(first).__name__)
        raise CheckFailure(f"{case}: the first element of `{what}` must be a tensor "
                           f"of shape ({d},) like w, got {shape}.")
    if isinstance(second, torch.Tensor):
        if second.ndim != 0:
            raise CheckFailure(
                f"{case}: the second element of `{what}` must be a scalar (shape ()) "
                f"like b, got shape {tuple(second.shape)}: use `.sum()`/`.mean()` "
                "of the residuals, not a 1-element slice.")
    elif not isinstance(second, Real) or isinstance(second, bool):
        raise CheckFailure(f"{case}: the second element of `{what}` must be a scalar "
                           f"tensor, got {type(second).__name__}.")
    return first.detach(), torch.as_tensor(second).detach()


# --------------------------------------------------------------------------- #
# Exercise 1: minibatch_indices
# --------------------------------------------------------------------------- #

def check_minibatch_indices(minibatch_indices: Callable[..., Any]) -> None:
    """Check ``minibatch_indices(n, batch_size, generator)`` against the reference."""
    name = "minibatch_indices"
    require_function(minibatch_indices, name)
    cases = [(10, 4, 0), (12, 4, 1), (7, 7, 2), (5, 1, 3), (3, 5, 4), (100, 32, 5)]
    for n, batch_size, seed in cases:
        case = f"case 'n={n}, batch_size={batch_size}, seed={seed}'"
        _check_one_epoch(minibatch_indices, name, case, n, batch_size, seed)
    _check_two_epochs(minibatch_indices, name, 10, 3, 6)
    passed(f"{name}: {len(cases)} cases give the batches of "
           "torch.randperm(n, generator=generator) in order, the last one smaller; "
           "a new order every epoch, global RNG untouched")


def _call_indices(fn: Callable[..., Any], name: str, case: str, n: int,
                  batch_size: int, generator: torch.Generator,
                  ) -> tuple[list[torch.Tensor], bool]:
    """Call the learner's function and validate the batches it returns."""
    with _global_rng_watch() as watch:
        result = call(fn, name, case, n, batch_size, generator)
    if result is None:
        raise CheckFailure(f"{case}: `{name}` returned None: did you forget "
                           "`return batches`?")
    if isinstance(result, torch.Tensor):
        raise CheckFailure(
            f"{case}: `{name}` returned one tensor; return a list of index tensors, "
            "one per batch, e.g. `list(perm.split(batch_size))`.")
    if not isinstance(result, (list, tuple)):
        raise CheckFailure(
            f"{case}: `{name}` must return a list of index tensors, got "
            f"{type(result).__name__}" + (": wrap it in list(...)."
                                          if hasattr(result, "__iter__") else "."))
    for k, batch in enumerate(result):
        if not isinstance(batch, torch.Tensor):
            raise CheckFailure(
                f"{case}: batch {k} is a {type(batch).__name__}; every batch must be "
                "a 1-D tensor of indices (slice the tensor from torch.randperm).")
        if batch.dtype != torch.int64 or batch.ndim != 1:
            raise CheckFailure(
                f"{case}: batch {k} has dtype {batch.dtype} and shape "
                f"{tuple(batch.shape)}; index batches must be 1-D int64 (LongTensor), "
                "as torch.randperm returns them.")
    return list(result), watch.changed


def _check_one_epoch(fn: Callable[..., Any], name: str, case: str, n: int,
                     batch_size: int, seed: int) -> None:
    generator = _generator(seed)
    batches, used_global = _call_indices(fn, name, case, n, batch_size, generator)
    if used_global:
        raise CheckFailure(f"{case}: the global random state changed.\n"
                           f"  Diagnosis: {GLOBAL_RNG_HINT}")
    expected = ref.minibatch_indices(n, batch_size, _generator(seed))
    sizes = [len(b) for b in batches]
    expected_sizes = [len(b) for b in expected]
    everything = torch.cat(batches) if batches else torch.zeros(0, dtype=torch.int64)
    if not torch.equal(everything.sort().values, torch.arange(n)):
        raise CheckFailure(f"{case}: {_coverage_problem(everything, sizes, n, batch_size)}")
    if n > 1 and torch.equal(everything, torch.arange(n)):
        raise CheckFailure(
            f"{case}: the batches are 0, 1, 2, ... in order: nothing was shuffled.\n"
            "  Diagnosis: cut a random permutation, "
            "torch.randperm(n, generator=generator), not torch.arange(n).")
    if sizes != expected_sizes:
        raise CheckFailure(
            f"{case}: batch sizes {sizes}, expected {expected_sizes}.\n  Diagnosis: "
            "consecutive slices of batch_size examples, only the last may be smaller "
            "(perm.split(batch_size) or perm[i:i + batch_size]).")
    if not all(torch.equal(a, e) for a, e in zip(batches, expected)):
        if _ignores_generator(fn, name, case, n, batch_size, seed, batches):
            hint = ("your batches do not depend on the generator passed in: did you "
                    "create your own generator or seed one yourself? Use "
                    "torch.randperm(n, generator=generator) with the one you get.")
        else:
            hint = ("the order differs from torch.randperm(n, generator=generator): "
                    "draw exactly one permutation with that call and cut it in order "
                    "(don't draw one per batch, don't sort or reverse it).")
        raise mismatch(case, torch.cat(expected), everything, hint)
    if not torch.equal(generator.get_state(), _state_after_randperm(n, seed)):
        if torch.equal(generator.get_state(), _generator(seed).get_state()):
            hint = ("the generator passed in was not used (its state did not move): "
                    "you drew from a copy or a new generator seeded like it, so every "
                    "epoch would get the same order. Call "
                    "torch.randperm(n, generator=generator) with the generator itself.")
        else:
            hint = ("the batches are right but you drew from the generator more than "
                    "once; draw exactly one permutation per epoch so the next epoch "
                    "continues the same random stream.")
        raise CheckFailure(f"{case}: {hint}")


def _coverage_problem(everything: torch.Tensor, sizes: list[int], n: int,
                      batch_size: int) -> str:
    """Explain why the batches are not a partition of 0 .. n-1."""
    counts = torch.bincount(everything.clamp(0, n), minlength=n + 1)[:n] \
        if everything.numel() else torch.zeros(n, dtype=torch.int64)
    out_of_range = bool(((everything < 0) | (everything >= n)).any())
    if (n % batch_size and everything.numel() == n - n % batch_size
            and all(s == batch_size for s in sizes) and int(counts.max()) <= 1):
        return (f"the batches hold {everything.numel()} of the {n} examples: you "
                f"dropped the last, smaller batch of {n % batch_size}.\n  Diagnosis: "
                "keep it (drop_last=False); every example must be used once per epoch.")
    if out_of_range:
        return (f"some indices are outside 0 .. {n - 1}.\n  Diagnosis: use "
                "torch.randperm(n, generator=generator), which permutes 0 .. n-1.")
    missing = int((counts == 0).sum())
    repeated = int((counts > 1).sum())
    if repeated:
        return (f"{repeated} examples appear more than once and {missing} never "
                "(batches overlap).\n  Diagnosis: draw ONE permutation per epoch and "
                "cut it into consecutive slices; a new draw per batch, or "
                "torch.randint (sampling with replacement), repeats examples.")
    return (f"{missing} of the {n} examples are in no batch.\n  Diagnosis: the "
            "slices must cover the whole permutation, including the last smaller one.")


def _ignores_generator(fn: Callable[..., Any], name: str, case: str, n: int,
                       batch_size: int, seed: int,
                       batches: list[torch.Tensor]) -> bool:
    """True when the same batches come out with a differently seeded generator."""
    other, _ = _call_indices(fn, name, case, n, batch_size, _generator(seed + 12345))
    return len(other) == len(batches) and all(
        torch.equal(a, b) for a, b in zip(other, batches))


def _check_two_epochs(fn: Callable[..., Any], name: str, n: int, batch_size: int,
                      seed: int) -> None:
    case = f"case 'two epochs in a row, n={n}, batch_size={batch_size}, seed={seed}'"
    generator, reference = _generator(seed), _generator(seed)
    for epoch in (1, 2):
        batches, _ = _call_indices(fn, name, case, n, batch_size, generator)
        expected = ref.minibatch_indices(n, batch_size, reference)
        if not all(torch.equal(a, e) for a, e in zip(batches, expected)):
            raise mismatch(
                f"{case}, epoch {epoch}", torch.cat(expected), torch.cat(batches),
                "every epoch must draw a fresh permutation from the same generator: "
                "don't re-seed it or copy it inside the function.")


# --------------------------------------------------------------------------- #
# Exercise 2: minibatch_gradient
# --------------------------------------------------------------------------- #

def check_minibatch_gradient(minibatch_gradient: Callable[..., Any]) -> None:
    """Check ``minibatch_gradient(w, b, X, y, idx)`` against the closed form."""
    name = "minibatch_gradient"
    require_function(minibatch_gradient, name)
    cases = [
        ("batch of 4 of 12 examples, d=3", 12, 3, torch.tensor([3, 7, 1, 0]),
         torch.float64),
        ("a single example", 12, 3, torch.tensor([5]), torch.float64),
        ("batch of 5, d=1", 9, 1, torch.tensor([8, 2, 4, 6, 0]), torch.float64),
        ("the whole data set as one batch", 6, 2, torch.arange(6), torch.float64),
        ("float32, batch of 16 of 40, d=4", 40, 4, torch.randperm(
            40, generator=_generator(7))[:16], torch.float32),
    ]
    for k, (label, n, d, idx, dtype) in enumerate(cases):
        case = f"case '{label}'"
        X, y, w, b = _regression(n, d, k, dtype)
        originals = [t.clone() for t in (w, b, X, y, idx)]
        result = call(minibatch_gradient, name, case, w, b, X, y, idx)
        actual = _as_pair(result, name, case, d, "grad_w, grad_b")
        if not all(torch.equal(t, o) for t, o in zip((w, b, X, y, idx), originals)):
            raise CheckFailure(f"{case}: `{name}` changed its inputs in place; compute "
                               "the gradient without modifying w, b, X, y or idx.")
        expected = ref.minibatch_gradient(w, b, X, y, idx)
        rtol = 1e-5 if dtype == torch.float32 else 1e-7
        if _close_pair(actual, expected, rtol):
            continue
        hint = _first_match(actual, _gradient_variants(expected, w, b, X, y, idx), rtol)
        if hint is None:
            part = ("grad_w" if not close(actual[0], expected[0], rtol=rtol) else
                    "grad_b")
            hint = (f"{part} is off; the batch gradient is (2/|B|) X_B^T r_B for w and "
                    "(2/|B|) sum(r_B) for b, with r_B = X_B w + b - y_B.")
        raise mismatch(case, _flat(expected), _flat(actual),
                       hint + "  (values shown: grad_w then grad_b)")
    passed(f"{name}: {len(cases)} cases match (2/|B|) X_B^T r_B and (2/|B|) sum r_B "
           "(float64 and float32, batches of 1 to all examples)")


def _gradient_variants(expected: tuple[torch.Tensor, torch.Tensor], w: torch.Tensor,
                       b: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                       idx: torch.Tensor) -> list[tuple[Any, str]]:
    """Classic wrong answers for the batch gradient, with their diagnosis."""
    size, n = len(idx), len(y)
    gw, gb = expected
    full = ref.mse_gradient(w, b, X, y)

    def scaled(factor: float) -> tuple[torch.Tensor, torch.Tensor]:
        return gw * factor, gb * factor

    return [
        (scaled(-1.0), "the gradient points the wrong way: the residual is "
                       "r = X_B w + b - y_B (prediction minus target), not "
                       "y - prediction."),
        (scaled(size) if size > 1 else None,
         f"your gradient is {size}x too large (the batch size): you summed over the "
         "batch instead of averaging. Divide by len(idx) (or use .mean()), so the "
         "step size does not depend on the batch size."),
        (scaled(0.5), "your gradient is half the right one: you forgot the factor 2 "
                      "from d/dr r^2 = 2r."),
        (scaled(0.5 * size) if size > 1 else None,
         "you summed instead of averaging AND forgot the factor 2: the gradient is "
         "(2/|B|) X_B^T r_B."),
        (scaled(size / n) if size < n else None,
         f"you divided by n = {n} (the whole data set) instead of the batch size "
         f"|B| = {size}."),
        (full if size < n else None,
         "this is the full-batch gradient: you ignored idx. Use only the rows "
         "X[idx] and y[idx]."),
    ]


# --------------------------------------------------------------------------- #
# Exercise 3: sgd_epoch
# --------------------------------------------------------------------------- #

def check_sgd_epoch(sgd_epoch: Callable[..., Any]) -> None:
    """Check ``sgd_epoch(w, b, X, y, lr, batch_size, generator)`` against the reference."""
    name = "sgd_epoch"
    require_function(sgd_epoch, name)
    cases = [(10, 2, 0.1, 4, 0), (12, 3, 0.05, 3, 1), (8, 2, 0.2, 8, 2),
             (6, 1, 0.02, 1, 3), (30, 4, 0.05, 7, 4)]
    for n, d, lr, batch_size, seed in cases:
        case = f"case 'n={n}, d={d}, lr={lr}, batch_size={batch_size}, seed={seed}'"
        _check_sgd_case(sgd_epoch, name, case, n, d, lr, batch_size, seed)
    _check_sgd_two_epochs(sgd_epoch, name)
    passed(f"{name}: {len(cases)} cases and two epochs in a row match one SGD step "
           "per shuffled mini-batch (w - lr * grad_w, b - lr * grad_b), "
           "generator used once per epoch, inputs and global RNG untouched")


def _call_sgd(fn: Callable[..., Any], name: str, case: str, X: torch.Tensor,
              y: torch.Tensor, w: torch.Tensor, b: torch.Tensor, lr: float,
              batch_size: int, generator: torch.Generator,
              ) -> tuple[tuple[torch.Tensor, torch.Tensor], bool]:
    originals = [t.clone() for t in (w, b, X, y)]
    with _global_rng_watch() as watch:
        result = call(fn, name, case, w, b, X, y, lr, batch_size, generator)
    actual = _as_pair(result, name, case, X.shape[1], "w, b")
    if not all(torch.equal(t, o) for t, o in zip((w, b, X, y), originals)):
        raise CheckFailure(
            f"{case}: `{name}` changed the tensors passed in (w -= ... or w.sub_ "
            "updates the caller's tensor in place).\n  Diagnosis: write "
            "w = w - lr * grad_w (a new tensor) so runs that start from the same "
            "w0 stay independent.")
    return actual, watch.changed


def _check_sgd_case(fn: Callable[..., Any], name: str, case: str, n: int, d: int,
                    lr: float, batch_size: int, seed: int) -> None:
    X, y, w, b = _regression(n, d, seed)
    generator = _generator(seed)
    actual, used_global = _call_sgd(fn, name, case, X, y, w, b, lr, batch_size,
                                    generator)
    if used_global:
        raise CheckFailure(f"{case}: the global random state changed.\n"
                           f"  Diagnosis: {GLOBAL_RNG_HINT}")
    expected = ref.sgd_epoch(w, b, X, y, lr, batch_size, _generator(seed))
    if _close_pair(actual, expected, 1e-7):
        if not torch.equal(generator.get_state(), _state_after_randperm(n, seed)):
            raise CheckFailure(
                f"{case}: the result is right, but the generator passed in did not "
                "advance by exactly one permutation.\n  Diagnosis: shuffle once per "
                "epoch with minibatch_indices(n, batch_size, generator), using that "
                "generator itself (not a copy), so the next epoch gets a new order.")
        return
    hint = _first_match(actual, _sgd_variants(w, b, X, y, lr, batch_size, seed), 1e-7)
    if hint is None and n > 1 and _sgd_ignores_generator(
            fn, name, case, X, y, w, b, lr, batch_size, seed, actual):
        hint = ("your result does not depend on the generator passed in: shuffle "
                "with minibatch_indices(len(y), batch_size, generator).")
    if hint is None:
        hint = ("for each batch idx of minibatch_indices(len(y), batch_size, "
                "generator): grad_w, grad_b = minibatch_gradient(w, b, X, y, idx); "
                "w = w - lr * grad_w; b = b - lr * grad_b. (Check that "
                "minibatch_indices and minibatch_gradient pass their checks.)")
    raise mismatch(case, _flat(expected), _flat(actual),
                   hint + "  (values shown: w then b)")


def _run_steps(w: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
               lr: float, batches: list[torch.Tensor], *, full: bool = False,
               carry: bool = True, summed: bool = False,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """SGD steps over ``batches``, optionally with one of the classic mistakes.

    ``full``: full-batch gradient at every step; ``carry=False``: every step
    starts from the initial ``(w, b)``; ``summed``: gradients summed over the
    batch instead of averaged.
    """
    w0, b0 = w, b
    for idx in batches:
        at_w, at_b = (w, b) if carry else (w0, b0)
        grad_w, grad_b = (ref.mse_gradient(at_w, at_b, X, y) if full else
                          ref.minibatch_gradient(at_w, at_b, X, y, idx))
        factor = len(idx) if summed else 1
        w, b = at_w - lr * factor * grad_w, at_b - lr * factor * grad_b
    return w, b


def _sgd_variants(w: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                  lr: float, batch_size: int, seed: int) -> list[tuple[Any, str]]:
    """Classic wrong epochs of SGD, with their diagnosis."""
    n = len(y)
    batches = ref.minibatch_indices(n, batch_size, _generator(seed))
    in_order = list(torch.arange(n).split(batch_size))
    one_full_step = _run_steps(w, b, X, y, lr, [torch.arange(n)])
    return [
        (one_full_step if len(batches) > 1 else None,
         "you took ONE full-batch gradient step for the whole epoch; SGD takes one "
         f"step per mini-batch ({len(batches)} steps here), each with the gradient "
         "of that batch only."),
        (_run_steps(w, b, X, y, lr, batches, full=True) if len(batches) > 1 else None,
         "you took one step per batch but each with the FULL gradient: pass the "
         "batch's indices idx to minibatch_gradient."),
        (_run_steps(w, b, X, y, lr, in_order) if n > 1 else None,
         "you went through the examples in order 0, 1, 2, ...: shuffle with "
         "minibatch_indices(len(y), batch_size, generator)."),
        (_run_steps(w, b, X, y, lr, batches[:-1])
         if n % batch_size and len(batches) > 1 else None,
         "you skipped the last, smaller batch: every example must be used once "
         "per epoch."),
        (_run_steps(w, b, X, y, lr, batches, carry=False) if len(batches) > 1 else None,
         "every step started again from the w, b passed in, so only the last batch "
         "counts: update w and b in the loop (w = w - lr * grad_w) and compute the "
         "next gradient at the new values."),
        (_run_steps(w, b, X, y, lr, batches, summed=True) if batch_size > 1 else None,
         "your steps are batch_size times too large: the batch gradient is a mean "
         "over the batch, not a sum."),
        (_run_steps(w, b, X, y, -lr, batches),
         "your steps went uphill: subtract lr * gradient."),
    ]


def _sgd_ignores_generator(fn: Callable[..., Any], name: str, case: str,
                           X: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                           b: torch.Tensor, lr: float, batch_size: int, seed: int,
                           actual: tuple[torch.Tensor, torch.Tensor]) -> bool:
    other, _ = _call_sgd(fn, name, case, X, y, w, b, lr, batch_size,
                         _generator(seed + 12345))
    return _close_pair(other, actual, 1e-12)


def _check_sgd_two_epochs(fn: Callable[..., Any], name: str) -> None:
    n, d, lr, batch_size, seed = 10, 2, 0.1, 3, 5
    case = f"case 'two epochs with one generator, n={n}, batch_size={batch_size}'"
    X, y, w, b = _regression(n, d, seed)
    generator, reference = _generator(seed), _generator(seed)
    actual, expected = (w, b), (w, b)
    for epoch in (1, 2):
        actual, _ = _call_sgd(fn, name, case, X, y, actual[0], actual[1], lr,
                              batch_size, generator)
        expected = ref.sgd_epoch(expected[0], expected[1], X, y, lr, batch_size,
                                 reference)
        if not _close_pair(actual, expected, 1e-7):
            raise mismatch(f"{case}, epoch {epoch}", _flat(expected), _flat(actual),
                           "the second epoch must continue from the first epoch's "
                           "w, b with a new order drawn from the same generator.")


# --------------------------------------------------------------------------- #
# Exercise 4: lr_schedule
# --------------------------------------------------------------------------- #

def check_lr_schedule(lr_schedule: Callable[..., Any]) -> None:
    """Check ``lr_schedule(step, lr0, decay)`` = lr0 / (1 + decay * step)."""
    name = "lr_schedule"
    require_function(lr_schedule, name)
    cases = [(0, 0.1, 0.5), (1, 0.1, 0.5), (10, 0.2, 0.1), (100, 1.0, 0.01),
             (3, 0.05, 0.0), (7, 0.3, 2.0), (4, 0.08, 0.25)]
    actuals = [_call_schedule(lr_schedule, name, *args) for args in cases]
    wrong = [(args, actual) for args, actual in zip(cases, actuals)
             if not close(actual, ref.lr_schedule(*args), rtol=1e-9, atol=1e-15)]
    if not wrong:
        passed(f"{name}: {len(cases)} cases match lr0 / (1 + decay * step), "
               "starting at lr0 for step 0")
        return
    (step, lr0, decay), actual = wrong[0]
    case = f"case 'step={step}, lr0={lr0}, decay={decay}'"
    hint = _schedule_diagnosis(cases, actuals)
    if hint is None and not math.isfinite(actual):
        hint = ("the learning rate must stay finite: lr0 / (1 + decay * step) "
                "never divides by zero.")
    raise mismatch(case, ref.lr_schedule(step, lr0, decay), actual,
                   hint or "the schedule is lr0 / (1 + decay * step).")


def _call_schedule(fn: Callable[..., Any], name: str, step: int, lr0: float,
                   decay: float) -> float:
    """The learner's learning rate for one case, as a float."""
    case = f"case 'step={step}, lr0={lr0}, decay={decay}'"
    try:
        with _global_rng_watch():
            actual = call(fn, name, case, step, lr0, decay)
    except CheckFailure as failure:
        if "ZeroDivisionError" not in str(failure):
            raise
        if step == 0:
            hint = ("lr0 / (decay * step) divides by zero at step 0; the schedule is "
                    "lr0 / (1 + decay * step), which starts at lr0.")
        else:
            hint = ("with decay = 0 the learning rate must stay lr0: decay is a rate "
                    "that multiplies the step, lr0 / (1 + decay * step); don't "
                    "divide by it.")
        raise CheckFailure(f"{failure}\n  Diagnosis: {hint}") from None
    if actual is None:
        raise CheckFailure(f"{case}: `{name}` returned None: did you forget `return`?")
    if isinstance(actual, torch.Tensor):
        raise CheckFailure(f"{case}: `{name}` returned a tensor; return a plain "
                           "Python float (float(...)).")
    if not isinstance(actual, Real) or isinstance(actual, bool):
        raise CheckFailure(f"{case}: `{name}` must return a float, got "
                           f"{type(actual).__name__}.")
    return float(actual)


_EXPONENTIAL = ("that is an exponential decay; the lesson's schedule decays like 1/t: "
                "lr0 / (1 + decay * step). (An exponential schedule shrinks so fast "
                "that the learning rates have a finite sum, and SGD can stop short "
                "of the minimum.)")

# (wrong schedule, diagnosis); a schedule returns None where it is undefined.
_SCHEDULE_MISTAKES: list[tuple[Callable[[int, float, float], float | None], str]] = [
    (lambda t, lr0, k: lr0 / (1 + k * (t + 1)),
     "off by one: at step 0 the learning rate must be lr0 itself; you decayed from "
     "step 1 (use step, not step + 1)."),
    (lambda t, lr0, k: lr0 / (1 + k * (t - 1)) if k * (t - 1) != -1 else None,
     "off by one: use 1 + decay * step, not 1 + decay * (step - 1)."),
    (lambda t, lr0, k: lr0 / (1 + t / k) if k else None,
     "decay is a rate that multiplies the step: 1 + decay * step, not "
     "1 + step / decay."),
    (lambda t, lr0, k: lr0 * math.exp(-k * t), _EXPONENTIAL),
    (lambda t, lr0, k: lr0 * (1 - k) ** t, _EXPONENTIAL),
    (lambda t, lr0, k: lr0 / (1 + k) ** t, _EXPONENTIAL),
    (lambda t, lr0, k: lr0 * k ** t, _EXPONENTIAL),
    (lambda t, lr0, k: lr0 / math.sqrt(1 + k * t),
     "that is a 1/sqrt(t) schedule; this one is lr0 / (1 + decay * step), without "
     "the square root."),
    (lambda t, lr0, k: lr0 * (1 - k * t),
     "that is a linear decay (it even turns negative); divide instead: "
     "lr0 / (1 + decay * step)."),
    (lambda t, lr0, k: lr0 / (1 + k) * t,
     "mind the brackets: lr0 / (1 + decay * step), not lr0 / (1 + decay) * step."),
]


def _schedule_diagnosis(cases: list[tuple[int, float, float]],
                        actuals: list[float]) -> str | None:
    """The diagnosis of the classic mistake that reproduces every case, if any."""
    for schedule, hint in _SCHEDULE_MISTAKES:
        values = [schedule(*args) for args in cases]
        if all(v is None or close(a, v, rtol=1e-9, atol=1e-15)
               for a, v in zip(actuals, values)):
            return hint
    return None
