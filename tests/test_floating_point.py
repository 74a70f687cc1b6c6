"""Tests of course.floating_point: ulp distances and FMA detection."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from course.floating_point import fma_in_use, max_ulp_distance, ulp_distance


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32,
                                   torch.float64])
def test_neighbours_are_one_ulp_apart(dtype):
    a = torch.tensor([1.0, -2.5, 1e-3, -3.0, 0.0], dtype=dtype)
    up = torch.nextafter(a, torch.full_like(a, float("inf")))
    down = torch.nextafter(a, torch.full_like(a, float("-inf")))
    assert ulp_distance(a, up).tolist() == [1] * 5
    assert ulp_distance(down, a).tolist() == [1] * 5
    assert ulp_distance(down, up).tolist() == [2] * 5
    assert ulp_distance(a, a).dtype == torch.int64


def test_known_distances():
    assert int(ulp_distance(torch.tensor(1.0), torch.tensor(2.0))) == 2 ** 23
    assert int(ulp_distance(torch.tensor(1.0, dtype=torch.float64),
                            torch.tensor(2.0, dtype=torch.float64))) == 2 ** 52
    # +0 and -0 are the same number; the smallest subnormals straddle zero
    tiny = torch.finfo(torch.float32).tiny * torch.finfo(torch.float32).eps
    assert ulp_distance(torch.tensor([-0.0, -tiny]), torch.tensor([0.0, tiny])).tolist() == [0, 2]
    # opposite huge values: no int32 overflow
    big = torch.tensor([3e38])
    assert int(ulp_distance(-big, big)) == 2 * int(ulp_distance(big, torch.tensor([0.0])))


def test_symmetric_and_shape_preserving():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, generator=gen)
    b = torch.randn(3, 4, generator=gen)
    assert ulp_distance(a, b).shape == (3, 4)
    assert torch.equal(ulp_distance(a, b), ulp_distance(b, a))
    assert ulp_distance(a.t(), b.t()).shape == (4, 3)  # non-contiguous input


def test_max_ulp_distance():
    a = torch.tensor([1.0, 2.0, 3.0])
    b = torch.nextafter(a, torch.full_like(a, 10.0))
    assert max_ulp_distance(a, a) == 0
    assert max_ulp_distance(a, b) == 1
    assert max_ulp_distance(torch.empty(0), torch.empty(0)) == 0


@pytest.mark.parametrize("a, b, error, match", [
    ([1.0], torch.tensor([1.0]), TypeError, "a must be a torch.Tensor"),
    (torch.tensor([1]), torch.tensor([1]), TypeError, "floating-point"),
    (torch.tensor([1.0]), torch.tensor([1.0], dtype=torch.float64), TypeError, "same dtype"),
    (torch.tensor([1.0]), torch.tensor([1.0, 2.0]), ValueError, "same shape"),
    (torch.tensor([float("nan")]), torch.tensor([1.0]), ValueError, "finite"),
    (torch.tensor([float("inf")]), torch.tensor([1.0]), ValueError, "finite"),
])
def test_bad_input(a, b, error, match):
    with pytest.raises(error, match=match):
        ulp_distance(a, b)


def test_fma_in_use_agrees_with_the_cpu_capability():
    expected = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    if expected:
        assert fma_in_use()


def test_fma_off_with_default_capability():
    code = ("import torch; from course.floating_point import fma_in_use; "
            "print(fma_in_use())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"ATEN_CPU_CAPABILITY": "default", "PATH": ""},
                         check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.stdout.strip() == "False"
