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


@pytest.fixture(scope="module")
def local_ray():
    """One real local Ray cluster for an integration module's stages (a stage joins the running one); 4 logical
    CPUs, as a stage's own local cluster declares on 2 cores."""
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1: a stand-in for a cloud object store (S3, or an S3-compatible one), spoken
    to over HTTP like the real thing. Yields its endpoint URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto's S3 server did not start") from None
            time.sleep(0.2)
    try:
        yield endpoint
    finally:
        server.kill()
        server.wait()


@pytest.fixture
def bucket(s3_server, monkeypatch, request) -> str:
    """A fresh bucket on the stand-in S3 server, with the standard AWS variables set (as a user's shell or a
    cluster's nodes would have them): ``s3://<bucket>``. Processes the test starts inherit the variables."""
    import uuid

    import pyarrow.fs as pafs

    from raydsbs.storage import S3_TIMEOUTS

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    name = f"raydsbs-{uuid.uuid4().hex[:10]}"
    pafs.S3FileSystem(endpoint_override=s3_server, allow_bucket_creation=True, **S3_TIMEOUTS).create_dir(name)
    return f"s3://{name}"
