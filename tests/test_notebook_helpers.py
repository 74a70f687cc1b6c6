"""course.notebook: save_definitions (lesson 6's last cell) and
load_learner_sgd (lesson 7's first cell)."""

from __future__ import annotations

import linecache
import textwrap

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import course.optim
from course.notebook import FALLBACK_NOTICE, load_learner_sgd, save_definitions

HELPERS = textwrap.dedent('''
    import functools


    def no_grad(step):
        """A decorator defined in another cell."""
        @functools.wraps(step)
        def wrapper(self, *args, **kwargs):
            with torch.no_grad():
                return step(self, *args, **kwargs)
        return wrapper


    def update(p, lr):
        p.add_(p.grad, alpha=-lr)
''')

CLASS = textwrap.dedent('''
    SCALE = 1.0


    class SGD(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-3, momentum=0):
            super().__init__(params, dict(lr=lr, momentum=momentum))

        @no_grad
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        update(p, group["lr"] * SCALE)


    opt = SGD([torch.zeros(2, requires_grad=True)])   # an experiment: not saved
    print("defined")
''')

OTHER = textwrap.dedent('''
    def closure():
        raise AssertionError("a function named like a parameter of step: not saved")
''')


@pytest.fixture()
def shell(tmp_path, monkeypatch):
    """An IPython shell (it caches each cell in linecache, as the kernel does)."""
    monkeypatch.chdir(tmp_path)
    sh = InteractiveShell()
    for cell in ("import torch", HELPERS, OTHER, CLASS):
        assert sh.run_cell(cell, store_history=True).success
    yield sh
    sh.cleanup()
    InteractiveShell.clear_instance()


def _run(sh, code):
    result = sh.run_cell(code, store_history=True)
    result.raise_error()
    return result.result


def test_saves_the_class_and_what_it_needs(shell, tmp_path, capsys):
    names = _run(shell, "from course.notebook import save_definitions\n"
                        "save_definitions([SGD], 'my_sgd.py')")
    text = (tmp_path / "my_sgd.py").read_text()
    assert names == ["no_grad", "update", "SCALE", "SGD"]
    assert text.count("class SGD") == 1 and "def no_grad" in text and "def update" in text
    assert "import torch\n" in text and "import functools\n" in text
    assert "opt = SGD" not in text and 'print("defined")' not in text  # experiments left out
    assert "def closure" not in text
    assert text.index("def no_grad") < text.index("class SGD")          # cells in order
    capsys.readouterr()
    cls = load_learner_sgd(tmp_path / "my_sgd.py")
    assert capsys.readouterr().out == f"training with your SGD from lesson 6 ({tmp_path / 'my_sgd.py'})\n"
    p = torch.ones(2, requires_grad=True)
    p.grad = torch.full((2,), 0.5)
    cls([p], lr=0.1).step()
    assert torch.equal(p.detach(), torch.full((2,), 0.95))


def test_each_cell_is_written_once(shell, tmp_path):
    _run(shell, "save_definitions = __import__('course.notebook').notebook.save_definitions\n"
                "save_definitions([SGD, no_grad, update, SGD], 'my_sgd.py')")
    text = (tmp_path / "my_sgd.py").read_text()
    assert text.count("def no_grad") == 1 and text.count("class SGD") == 1


def test_a_rerun_helper_cell_still_comes_first(shell, tmp_path):
    """A cell run again after the class cell moves above it: the class needs
    its decorator while the module loads."""
    _run(shell, HELPERS)
    _run(shell, CLASS)
    _run(shell, HELPERS + "\n\nEXTRA = 1\n")
    _run(shell, "from course.notebook import save_definitions\n"
                "save_definitions([SGD], 'my_sgd.py')")
    text = (tmp_path / "my_sgd.py").read_text()
    assert text.index("def no_grad") < text.index("class SGD")
    assert load_learner_sgd(tmp_path / "my_sgd.py") is not course.optim.SGD


def test_exec_with_a_linecache_entry(tmp_path):
    """Any code whose source linecache holds as IPython does (no mtime) will do."""
    source = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n\n\nprint('hi')\n"
    name = "<cell-test-area>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    ns = {"__name__": "__main__"}
    exec(compile(source, name, "exec"), ns)
    try:
        assert save_definitions([ns["area"]], tmp_path / "area.py") == ["area"]
    finally:
        del linecache.cache[name]
    text = (tmp_path / "area.py").read_text()
    assert "import math" in text and "print" not in text


def test_refuses_what_no_cell_defined(tmp_path):
    with pytest.raises(ValueError, match="not defined in a notebook cell"):
        save_definitions([course.optim.SGD], tmp_path / "x.py")
    with pytest.raises(TypeError, match="functions and classes"):
        save_definitions([3], tmp_path / "x.py")
    with pytest.raises(ValueError, match="nothing to save"):
        save_definitions([], tmp_path / "x.py")


def test_missing_file_falls_back(tmp_path, capsys):
    assert load_learner_sgd(tmp_path / "my_sgd.py") is course.optim.SGD
    out = capsys.readouterr().out
    assert out == f"lesson 6 not finished ({tmp_path / 'my_sgd.py'} not found): {FALLBACK_NOTICE}\n"


@pytest.mark.parametrize("source, reason", [
    ("class SGD(:\n", "SyntaxError"),
    ("import torch\nx = undefined_name\n", "NameError"),
    ("import torch\nSGD = 3\n", "TypeError"),
    ("import torch\n\nclass Other(torch.optim.Optimizer):\n    pass\n", "AttributeError"),
    ("import torch\n\n\nclass SGD(torch.optim.Optimizer):\n"
     "    def __init__(self, params, lr=1e-3, momentum=0):\n"
     "        raise NotImplementedError()\n", "NotImplementedError"),
])
def test_broken_file_falls_back(tmp_path, capsys, source, reason):
    path = tmp_path / "my_sgd.py"
    path.write_text(source)
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    assert load_learner_sgd(path) is course.optim.SGD
    assert torch.equal(torch.rand(1), expected), "the random state changed"
    out = capsys.readouterr().out
    assert out.startswith(f"your SGD in {path} does not work yet ({reason}")
    assert out.endswith(f": {FALLBACK_NOTICE}\n") and out.count("\n") == 1


def test_cells_run_without_history_keep_their_order(tmp_path, monkeypatch):
    """nbval runs cells without storing history (one execution count for all):
    the order in which the cells were first compiled decides."""
    monkeypatch.chdir(tmp_path)
    sh = InteractiveShell()
    try:
        for cell in ("import torch", HELPERS, OTHER, CLASS,
                     "from course.notebook import save_definitions\n"
                     "saved = save_definitions([SGD], 'my_sgd.py')"):
            assert sh.run_cell(cell, store_history=False).success
        assert sh.user_ns["saved"] == ["no_grad", "update", "SCALE", "SGD"]
    finally:
        sh.cleanup()
        InteractiveShell.clear_instance()
