"""Shared fixtures: one real local Ray and one PostgreSQL server for the session; per test a
fresh workspace and fresh databases."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray

from tests.postgres import pg_db, pg_server  # noqa: F401  (fixtures: a real PostgreSQL server)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A local Ray with 8 declared CPUs (trials need 1 each) shared by the in-process tests."""
    if not ray.is_initialized():
        ray.init(num_cpus=8, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text (dedented) to a spec file in the test's folder."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests (multi-node Ray, kills, Ctrl-C) race real processes on a loaded machine: a
    failure is rerun once, and shows as ``R`` / ``rerun`` in pytest's output."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.flaky(reruns=1))
