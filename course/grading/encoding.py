"""Values across the process boundary: the child encodes what its probes
return as plain JSON (exact types only, tensors and arrays as raw bytes); the
trusted parent parses the child's reply (bounded in size and depth) and
compares values exactly or within a probe's tolerance."""

from __future__ import annotations

import base64
import builtins
import json
from typing import Any

import numpy as np

from course.grading.probes import Probe

#: The builtins as they were before any learner code ran.
__builtins__ = dict(vars(builtins))  # noqa: A001


_B64ENCODE = base64.b64encode


_ASCONTIGUOUS = np.ascontiguousarray


_NP_GENERIC = np.generic


def encode(value: Any) -> Any:
    """A JSON-safe, learner-proof rendering of a probe value.

    Only exact built-in types are trusted; a subclass or unknown object is
    recorded by its type name, so an object whose ``__eq__`` always returns
    True can never match a real value.
    """
    tensor_types, tb, uint8 = torch_originals()
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return {"float": float.hex(value)}
    if kind in (list, tuple):
        return [encode(v) for v in value]
    if kind in tensor_types:
        # torch._C.TensorBase is immutable: its methods are torch's, whatever
        # the learner's code did to torch.Tensor.
        t = tb.contiguous(tb.cpu(tb.detach(value)))
        raw = tb.numpy(tb.view(tb.reshape(t, (-1,)), uint8)).tobytes() if tb.numel(t) else b""
        return {"tensor": str(tb.dtype.__get__(t)), "shape": list(tb.size(t)),
                "bytes": _B64ENCODE(raw).decode()}
    if kind is np.ndarray or isinstance(value, _NP_GENERIC) and kind.__module__ == "numpy":
        a = _ASCONTIGUOUS(value)
        return {"array": str(a.dtype), "shape": list(a.shape),
                "bytes": _B64ENCODE(a.tobytes()).decode()}
    return {"object": f"{kind.__module__}.{kind.__qualname__}"}


_TORCH: list[Any] = []


def torch_originals() -> tuple[tuple[type, ...], Any, Any]:
    """torch's tensor types, C tensor methods and uint8, captured once (in the
    child: before the learner's code runs)."""
    if not _TORCH:
        import torch
        _TORCH.extend([(torch.Tensor, torch.nn.Parameter), torch._C.TensorBase, torch.uint8])
    return _TORCH[0], _TORCH[1], _TORCH[2]


def decode_numeric(v: Any) -> np.ndarray | None:
    """Float view of an encoded number/array/tensor, for tolerant comparison."""
    import torch
    if isinstance(v, (bool, int)):
        return np.asarray(float(v))
    if isinstance(v, dict) and "float" in v:
        return np.asarray(float.fromhex(v["float"]))
    if isinstance(v, dict) and ("array" in v or "tensor" in v):
        raw = base64.b64decode(v["bytes"])
        if "array" in v:
            arr = np.frombuffer(raw, dtype=np.dtype(v["array"]))
        else:
            dtype = getattr(torch, v["tensor"].removeprefix("torch."))
            arr = torch.frombuffer(bytearray(raw), dtype=dtype).numpy() if raw \
                else np.zeros(0)
        return arr.reshape(v["shape"]).astype(float) if arr.dtype.kind in "fiub" else None
    return None


def same(actual: Any, expected: Any, probe: Probe) -> bool:
    """Compare encoded values exactly, or within the probe's tolerance.

    ``actual`` comes from the child, where the learner's code ran (and may have
    patched torch or numpy): anything malformed in it is a mismatch, never an
    exception.
    """
    try:
        return _same(actual, expected, probe)
    except Exception:  # noqa: BLE001 - untrusted input
        return False


def _same(actual: Any, expected: Any, probe: Probe) -> bool:
    if probe.rtol == 0 and probe.atol == 0:
        return actual == expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and \
            all(_same(a, e, probe) for a, e in zip(actual, expected))
    a, e = decode_numeric(actual), decode_numeric(expected)
    if a is None or e is None:
        return actual == expected
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=probe.rtol, atol=probe.atol,
                                                   equal_nan=True))


MAX_OUTPUT = 16 << 20


#: Deepest nesting accepted in a child's reply (probe values are shallow).
_MAX_DEPTH = 32


def _depth(text: str) -> int:
    """Deepest nesting of JSON brackets in ``text`` (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_results(output: bytes, grade_ids: list[str]) -> dict[str, dict[str, Any]] | str:
    """The child's reply: exactly one line ``{grade_id: result}`` per grade id,
    in order, each result ``{"ok": value}`` or ``{"error": text}``; or, for
    anything else (a duplicate, an extra or unknown line, bad JSON, nesting
    deeper than :data:`_MAX_DEPTH`), a message saying so. A reply that stops
    early (a probe timed out, the process died) is fine: the results so far
    count. Never raises."""
    results: dict[str, dict[str, Any]] = {}
    for line in output.decode(errors="replace").splitlines():
        expected = grade_ids[len(results)] if len(results) < len(grade_ids) else None
        try:
            if _depth(line) > _MAX_DEPTH:
                raise ValueError("nested too deeply")
            item = json.loads(line)
        except (ValueError, RecursionError):
            return "the re-run wrote something that is not a probe result"
        if expected is None or not isinstance(item, dict) or list(item) != [expected]:
            return "the re-run wrote result lines that no probe wrote (forged or duplicated)"
        value = item[expected]
        if not isinstance(value, dict) or len(value) != 1 or not ({"ok", "error"} & set(value)):
            return "the re-run wrote a malformed probe result"
        results[expected] = value
    return results
