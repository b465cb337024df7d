"""Every test here runs on SQLite and on PostgreSQL (the `store_url` fixture of tests/conftest.py;
PostgreSQL is skipped with the reason when FAIRTRIAL_TEST_PG_URL is not set, and required in CI)."""

from __future__ import annotations

import pytest

from fairtrial.store.db import Store


def record(key: str, stage: str = "work", recipe: str = "_test", **kw) -> dict:
    """A planned stage run as the engine passes it to `Store.ensure_runs`."""
    return dict({"key": key, "recipe": recipe, "stage": stage, "version": "1",
                 "params": {"steps": 3}, "seed": 0, "needs": {}, "input_files": {}}, **kw)


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.dispose()
