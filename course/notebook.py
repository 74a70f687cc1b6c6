"""Notebook helpers: one-line set-up, and carrying a class from one lesson to the next.

Every lesson starts with ``from course.notebook import setup; setup()`` so
that its printed numbers and figures are the same on every run (the stored
outputs are regression-tested with nbval).

Lesson 6's last cell saves the learner's optimizer with
:func:`save_definitions`; lesson 7 loads it with :func:`load_learner_sgd`,
which falls back to :class:`course.optim.SGD` when there is nothing (or
nothing usable) to load, so that lesson 7 also runs on its own (as it does
in grading, where the file is absent).
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import linecache
import pathlib
import random
import symtable
import sys
import types
from typing import Any, Iterable

import numpy as np

__all__ = ["setup", "save_definitions", "load_learner_sgd", "FALLBACK_NOTICE"]


def setup(seed: int = 0, threads: int = 1) -> None:
    """Seed every RNG, fix torch's thread count, and set a compact plot style.

    Args:
        seed: seed for ``random``, numpy's legacy global RNG and torch.
        threads: torch intra-op threads; 1 makes float sums reproducible
            across machines with different core counts.
    """
    import matplotlib as mpl
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    mpl.rcParams.update({"figure.figsize": (5.5, 3.5), "figure.dpi": 80,
                         "axes.grid": True, "grid.alpha": 0.3,
                         "svg.hashsalt": "course"})


# ----------------------------------------------------------------- save_definitions

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_IMPORTS = (ast.Import, ast.ImportFrom)


class _Cell:
    """One notebook cell that defines something to save."""

    def __init__(self, filename: str, source: str, order: tuple[int, int]) -> None:
        self.filename, self.order = filename, order
        tree = ast.parse(source)
        self.stmts = list(tree.body)
        self.lines = source.splitlines()
        self.defined = {name for s in self.stmts for name in _bound(s)}

    def kept(self, wanted: set[str]) -> list[ast.stmt]:
        """The cell's definitions and imports, and the assignments of names
        that ``wanted`` (names the kept code reads) asks for; not its other
        statements (prints, checks, experiments)."""
        keep = [s for s in self.stmts if isinstance(s, _DEFS + _IMPORTS)]
        while True:
            need = wanted | {n for s in keep for n in _free(s)}
            more = [s for s in self.stmts if s not in keep and _bound(s) & need
                    and isinstance(s, (ast.Assign, ast.AnnAssign))]
            if not more:
                return sorted(keep, key=lambda s: s.lineno)
            keep += more

    def text(self, stmts: list[ast.stmt]) -> str:
        """The source lines of ``stmts`` (decorators and comments inside included)."""
        parts = []
        for s in stmts:
            first = min([s.lineno] + [d.lineno for d in getattr(s, "decorator_list", [])])
            parts.append("\n".join(self.lines[first - 1:s.end_lineno]))
        return "\n\n\n".join(parts)


def _bound(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds."""
    if isinstance(stmt, _DEFS):
        return {stmt.name}
    if isinstance(stmt, _IMPORTS):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else \
        [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else []
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _free(stmt: ast.stmt) -> set[str]:
    """Global names a statement reads (at the top level, or in the functions
    and classes it defines), from Python's own symbol tables."""
    names: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        top = table.get_type() == "module"
        names.update(s.get_name() for s in table.get_symbols()
                     if s.is_referenced() and (top or s.is_global()))
        for child in table.get_children():
            walk(child)

    walk(symtable.symtable(ast.unparse(stmt), "<cell>", "exec"))
    return names


def _import_time(stmt: ast.stmt) -> set[str]:
    """Names a statement reads while the module is imported (decorators,
    base classes, defaults, annotations, class bodies): what must be defined
    *above* it."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = stmt.args
        exprs = [*stmt.decorator_list, *a.defaults, *[d for d in a.kw_defaults if d]]
        exprs += [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs,
                                         a.vararg, a.kwarg] if x is not None and x.annotation]
        exprs += [stmt.returns] if stmt.returns else []
        return {n.id for e in exprs for n in ast.walk(e) if isinstance(n, ast.Name)}
    if isinstance(stmt, ast.ClassDef):
        exprs = [*stmt.decorator_list, *stmt.bases, *[k.value for k in stmt.keywords]]
        names = {n.id for e in exprs for n in ast.walk(e) if isinstance(n, ast.Name)}
        return names.union(*[_import_time(s) for s in stmt.body])
    return _free(stmt)


def _function_of(obj: Any) -> types.FunctionType:
    """The plain function whose code tells where ``obj`` was defined: the
    function itself (decorators unwrapped), or for a class one of the methods
    written in its body."""
    if isinstance(obj, type):
        for value in vars(obj).values():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            elif isinstance(value, property):
                value = value.fget
            value = inspect.unwrap(value) if callable(value) else value
            if isinstance(value, types.FunctionType) and \
                    value.__qualname__.startswith(obj.__qualname__ + "."):
                return value
        raise ValueError(f"cannot find where class {obj.__name__} was defined: it has no "
                         "method of its own")
    fn = inspect.unwrap(obj) if callable(obj) else obj
    if not isinstance(fn, types.FunctionType):
        raise TypeError(f"save_definitions saves functions and classes, got "
                        f"{type(obj).__name__}")
    return fn


def _cell_order() -> dict[str, int]:
    """Execution count of every cell compiled by IPython (empty outside IPython;
    cells run without storing history all share one count, and then the
    order in which linecache first saw them decides)."""
    shell = getattr(builtins, "get_ipython", lambda: None)()
    return dict(getattr(getattr(shell, "compile", None), "_filename_map", {}) or {})


def _in_a_cell(fn: types.FunctionType) -> bool:
    """Whether ``fn`` was compiled from a notebook cell: IPython caches each
    cell's source in :mod:`linecache` with no modification time (real files
    have one)."""
    entry = linecache.cache.get(fn.__code__.co_filename)
    return entry is not None and len(entry) == 4 and entry[1] is None


def _cell_of(fn: types.FunctionType, name: str, order: dict[str, int]) -> _Cell:
    filename = fn.__code__.co_filename
    if not _in_a_cell(fn):
        raise ValueError(f"{name} was not defined in a notebook cell of this session "
                         f"({filename}): run the cell that defines it, then save again")
    cached = list(linecache.cache)
    try:
        cell = _Cell(filename, "".join(linecache.getlines(filename)),
                     (order.get(filename, 0), cached.index(filename)))
    except SyntaxError as exc:
        raise ValueError(f"the cell that defines {name} does not parse: {exc}") from None
    if name not in cell.defined:
        raise ValueError(f"{name} is not defined at the top level of its cell ({filename})")
    return cell


def _import_line(name: str, value: Any) -> str | None:
    """An import statement that binds ``name`` to ``value``, if there is one."""
    if isinstance(value, types.ModuleType):
        module = value.__name__
        if module == name:
            return f"import {module}"
        if "." in module and module.rsplit(".", 1)[1] == name:
            return f"from {module.rsplit('.', 1)[0]} import {name}"
        return f"import {module} as {name}"
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not module or module == "__main__" or not qualname or "." in qualname \
            or getattr(sys.modules.get(module), qualname, None) is not value:
        return None
    return f"from {module} import {qualname}" + (f" as {name}" if name != qualname else "")


def save_definitions(objects: Iterable[Any], path: str | pathlib.Path) -> list[str]:
    """Write the notebook cells that define ``objects`` to a module at ``path``.

    Each object (a function or a class) is found through the code of the
    function (for a class, of one of its methods): its ``co_filename`` names
    the cell, and :mod:`linecache`, which IPython fills with every cell it
    runs, holds that cell's source. What the saved code reads from other
    cells (a decorator, a helper function) is saved too, and the modules and
    library objects it reads are imported at the top. Of each cell only the
    definitions, imports and the assignments they need are written (not
    prints, checks or experiments), each cell once, in the order the cells
    last ran (a cell is moved below what it needs while the module loads).

    Args:
        objects: functions and classes defined in notebook cells.
        path: the module to write, e.g. ``"../my_sgd.py"``.

    Returns:
        The names defined in the written module.

    Raises:
        ValueError: an object's cell cannot be found (e.g. it was defined in
            a module, or its cell was not run in this kernel).
    """
    objects = list(objects)
    if not objects:
        raise ValueError("nothing to save: pass the functions and classes to save")
    order = _cell_order()
    namespace = _function_of(objects[0]).__globals__
    cells: dict[str, _Cell] = {}
    wanted: dict[str, set[str]] = {}
    imports: dict[str, str] = {}
    todo = [(getattr(obj, "__name__", "?"), _function_of(obj)) for obj in objects]
    while todo:
        name, fn = todo.pop(0)
        cell = _cell_of(fn, name, order)
        cell = cells.setdefault(cell.filename, cell)
        wanted.setdefault(cell.filename, set())
        for stmt in cell.kept(wanted[cell.filename]):
            for free in sorted(_free(stmt) - cell.defined):
                if free in imports or free not in namespace:
                    continue                      # a builtin, or not defined anywhere
                value = namespace[free]
                line = _import_line(free, value)
                if line is not None:
                    imports[free] = line
                    continue
                try:
                    dep = _function_of(value)
                except (TypeError, ValueError):
                    continue                      # a value from the session: not saved
                other = dep.__code__.co_filename
                if other in cells:
                    wanted[other].add(free)
                elif _in_a_cell(dep):
                    todo.append((free, dep))
                    wanted.setdefault(other, set()).add(free)
    texts, defs = {}, {}
    for filename, cell in cells.items():
        stmts = cell.kept(wanted[filename])
        texts[filename] = (cell.text(stmts), {n for s in stmts for n in _bound(s)},
                           set().union(*[_import_time(s) for s in stmts]))
        defs[filename] = [n for s in stmts if not isinstance(s, _IMPORTS) for n in _bound(s)]
    defined: list[str] = []
    ordered, pending = [], sorted(cells, key=lambda f: cells[f].order)
    while pending:
        ready = [f for f in pending if not (texts[f][2] & set().union(
            *[texts[g][1] for g in pending if g != f]) - texts[f][1])]
        f = (ready or pending)[0]
        ordered.append(texts[f][0])
        defined += defs[f]
        pending.remove(f)
    header = ('"""Saved from a notebook by course.notebook.save_definitions: do not edit '
              'here,\nedit the notebook and run its saving cell again."""\n\n')
    body = "\n".join(sorted(set(imports.values()), key=lambda x: (x.startswith("from"), x))) + "\n\n\n" + "\n\n\n".join(ordered)
    pathlib.Path(path).write_text(header + body.strip() + "\n", encoding="utf-8")
    return defined


# ----------------------------------------------------------------- load_learner_sgd

#: What lesson 7 prints when it trains with the course's class.
FALLBACK_NOTICE = "training with the course's reference SGD (course.optim.SGD)"


def _smoke_test(cls: Any) -> None:
    """Build ``cls`` on two small tensors and take two momentum steps (no RNG)."""
    import torch

    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"SGD is {cls!r}, not a subclass of torch.optim.Optimizer")
    params = [torch.ones(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    opt = cls(params, lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        (params[0].square().sum() + (params[1] - 1).square().sum()).backward()
        opt.step()


def load_learner_sgd(path: str | pathlib.Path = "../my_sgd.py", name: str = "SGD") -> type:
    """The learner's optimizer class saved by lesson 6, or the course's.

    Imports the module at ``path`` (written by :func:`save_definitions` at the
    end of lesson 6), takes its class ``name`` and tries it (two momentum
    steps on two small tensors). Prints one line saying which class is used:
    when the file is missing, fails to import, or the class fails that try
    (e.g. it still raises ``NotImplementedError``), the result is
    :class:`course.optim.SGD`, with the reason. The random state is left
    untouched either way.

    Args:
        path: the saved module (relative to the notebook's folder).
        name: the class to take from it.

    Returns:
        A subclass of ``torch.optim.Optimizer``.
    """
    import torch

    from course.optim import SGD

    path = pathlib.Path(path)
    if not path.is_file():
        print(f"lesson 6 not finished ({path} not found): {FALLBACK_NOTICE}")
        return SGD
    try:
        with torch.random.fork_rng(devices=[]):
            spec = importlib.util.spec_from_file_location("my_sgd", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            cls = getattr(module, name)
            _smoke_test(cls)
    except Exception as exc:  # noqa: BLE001 - any failure: say so and fall back
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        reason = reason.splitlines()[0][:120]
        print(f"your {name} in {path} does not work yet ({reason}): {FALLBACK_NOTICE}")
        return SGD
    sys.modules["my_sgd"] = module
    print(f"training with your {name} from lesson 6 ({path})")
    return cls
