"""Shared test set-up: integration tests (local Ray, real engines) run only with --run-integration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The paper's released teacher outputs, beside the project (never copied into it).
DSS_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dss"
REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--run-integration", action="store_true", help="also run tests marked integration")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-integration") or os.environ.get("RAYDSBS_INTEGRATION") == "1":
        return
    skip = pytest.mark.skip(reason="integration test: pass --run-integration (make test does)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def dss_data() -> Path:
    if not DSS_DATA.is_dir():
        pytest.skip(f"the paper's released files are not at {DSS_DATA}")
    return DSS_DATA
