"""Shared pytest fixtures and helpers."""

from __future__ import annotations

import pathlib
import socket

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The course's seed model: Linear(10, 5) -> ReLU -> Linear(5, 1)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(10, 5), torch.nn.ReLU(),
                               torch.nn.Linear(5, 1)).to(dtype)


def batch(seed: int = 1, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed regression batch for :func:`mlp`."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(16, 10, generator=gen, dtype=dtype),
            torch.randn(16, 1, generator=gen, dtype=dtype))


@pytest.fixture
def root() -> pathlib.Path:
    """The repository root."""
    return ROOT


#: The longest test files, first. `make test` distributes whole files over the
#: cores (pytest-xdist --dist loadfile) in collection order
#: (--no-loadscope-reorder): started last, the five-minute grading round trip
#: would leave one core idle at the end.
SLOW_FIRST = ("tests/test_autograde.py", "tests/test_cluster.py", "tests/hub/", "tests/e2e/",
              "tests/test_cli.py", "tests/test_instructor_cycle.py", "solutions/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)),
                    len(SLOW_FIRST))
    items.sort(key=rank)
