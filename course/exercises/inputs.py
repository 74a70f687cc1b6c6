"""Callables that the grading harness hands to a learner's code.

Whatever a case or a flow passes to learner code can be inspected by it: a
function's ``__globals__`` is the module that defined it. A function defined in
a spec module would open that module's namespace (its reference, its correct
helpers) to the code being graded. So the callables passed in live here, in a
module that holds nothing but them and what they need: tensors, a model, a
record of calls.
"""

from __future__ import annotations

import builtins
import dis
import types
from typing import Any

import torch
from torch import nn

from course.exercises.spec import CheckFailure

#: The builtins as they were before any learner code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001


class LossClosure:
    """The closure of ``optimizer.step(closure)``: zero the gradients, compute
    the MSE loss of ``model`` on ``(X, y)``, backpropagate, record and return
    it. ``not_enabled`` is the message raised when it is called without
    gradients enabled (torch calls it under ``torch.enable_grad()``)."""

    def __init__(self, opt: Any, model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                 not_enabled: str) -> None:
        self.opt, self.model, self.X, self.y = opt, model, X, y
        self.not_enabled = not_enabled
        self.record: list[torch.Tensor] = []

    def __call__(self) -> torch.Tensor:
        if not torch.is_grad_enabled():
            raise CheckFailure(self.not_enabled)
        self.opt.zero_grad()
        loss = nn.functional.mse_loss(self.model(self.X), self.y)
        loss.backward()
        self.record.append(loss)
        return loss


#: The only global names a closure handed to learner code may use.
_SAFE_GLOBALS = {"torch": torch, "nn": nn}


def isolated(fn: Any) -> Any:
    """``fn`` (a closure defined in a spec's flow) rebuilt with a namespace of
    its own that holds only torch (its captured variables stay as they are):
    learner code that reads its ``__globals__`` finds nothing of the spec.
    Raises if ``fn`` uses another global name (pass it in as a variable)."""
    unknown = _global_names(fn.__code__) - set(_SAFE_GLOBALS) - set(vars(builtins))
    if unknown:
        raise ValueError(f"{fn.__qualname__} uses globals {sorted(unknown)}: a closure "
                         "handed to learner code may only use torch and its own variables")
    namespace = {"__builtins__": __builtins__, **_SAFE_GLOBALS}
    return types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__,
                              fn.__closure__)


def _global_names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it read or write."""
    names = {ins.argval for ins in dis.get_instructions(code)
             if ins.opname in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names
