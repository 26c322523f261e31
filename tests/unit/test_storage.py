"""The storage layer on a local disk and on an S3 server (moto's, on 127.0.0.1: the stand-in for a cloud store):
paths, whole-or-nothing outputs without a rename, local copies of stored folders, and a run directory in a bucket."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from raydsbs.config import Config
from raydsbs.rundir import open_run, run_dir_for
from raydsbs.staging import committed, written_whole
from raydsbs.storage import COMMIT_MARKER, local_copy, location


def test_a_local_path_and_a_uri_name_the_same_kinds_of_location(tmp_path, bucket):
    for root in (location(tmp_path), location(f"{bucket}/runs")):
        folder = root / "a"
        (folder / "one.json").write_text('{"x": 1}')
        (folder / "sub" / "two.parquet").write_bytes(b"")
        assert json.loads((folder / "one.json").read_text()) == {"x": 1}
        assert (folder / "one.json").is_file() and folder.is_dir() and not (folder / "none").exists()
        assert [child.name for child in folder.iterdir()] == ["one.json", "sub"]
        assert [found.name for found in root.glob("*/sub/*.parquet")] == ["two.parquet"]
        assert str(root / "a" / "one.json").endswith("runs/a/one.json" if not root.is_local else "a/one.json")
        assert (folder / "one.json").with_suffix(".md").name == "one.md"
        folder.remove()
        assert not folder.exists() and root.iterdir() == []
    assert str(location(f"{bucket}/runs") / "x") == f"{bucket}/runs/x"
    assert str(location(bucket)) == bucket and str(location(f"{bucket}/runs").parent) == bucket
    # the endpoint in the URI itself (pyarrow's own form), written back with the query last
    endpoint = os.environ["AWS_ENDPOINT_URL"].removeprefix("http://")
    named = location(f"{bucket}/runs?endpoint_override={endpoint}&scheme=http") / "y.txt"
    assert str(named) == f"{bucket}/runs/y.txt?endpoint_override={endpoint}&scheme=http"
    named.write_text("via the URI's endpoint")
    assert location(str(named)).read_text() == (location(f"{bucket}/runs") / "y.txt").read_text()
    assert os.fspath(location(tmp_path) / "x") == str(tmp_path / "x")
    assert location("runs").local_path() == Path.cwd() / "runs"  # relative: against the working directory
    with pytest.raises(TypeError, match="not on a local filesystem"):
        os.fspath(location(f"{bucket}/runs"))
    with pytest.raises(ValueError, match="names its bucket"):
        location("s3:///runs")


def test_a_store_that_answers_late_is_waited_for(bucket, monkeypatch):
    """A busy store (moto's server behind a proxy that holds each new connection 3.5 s before passing it on): a
    client with the AWS SDK's own timeouts gives up ("curlCode: 28, Timeout was reached", as a test on a loaded
    CI machine met it); the storage layer's clients wait for it, the endpoint in the environment or in the URI."""
    import socket
    import threading
    import time
    from urllib.parse import urlsplit

    store = urlsplit(os.environ["AWS_ENDPOINT_URL"])
    proxy = socket.create_server(("127.0.0.1", 0))

    def pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def hold_then_pass(client):
        time.sleep(3.5)
        upstream = socket.create_connection((store.hostname, store.port))
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    def accept():
        while True:
            threading.Thread(target=hold_then_pass, args=(proxy.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    slow = f"127.0.0.1:{proxy.getsockname()[1]}"
    sdk_default = pafs.S3FileSystem(
        endpoint_override=slow, scheme="http", retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1)
    )
    with pytest.raises(OSError, match="Timeout was reached"):
        sdk_default.get_file_info(pafs.FileSelector(bucket.removeprefix("s3://"), allow_not_found=True))
    (location(bucket) / "slow" / "a.txt").write_text("written before the store slowed")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{slow}")
    assert [found.name for found in location(f"{bucket}/slow").iterdir()] == ["a.txt"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint in the URI: from_uri's client, given the same timeouts
    assert location(f"{bucket}/slow/a.txt?endpoint_override={slow}&scheme=http").is_file()


def test_a_stored_folder_counts_once_its_marker_is_uploaded_and_a_failed_write_leaves_nothing(bucket):
    target = location(bucket) / "run" / "corpus"
    with pytest.raises(RuntimeError), written_whole(target) as staging:
        (staging / "train.parquet").write_text("half")
        raise RuntimeError("killed mid-write")
    assert not target.exists() and not committed(target)

    (target / "train.parquet").write_text("left by an upload killed before its marker")
    assert not committed(target)  # files without the marker are not an output
    with written_whole(target) as staging:
        (staging / "train.parquet").write_text("whole")
        (staging / "val.parquet").write_text("whole")
    assert committed(target) and (target / COMMIT_MARKER).is_file()
    assert [f.name for f in target.iterdir()] == [COMMIT_MARKER, "train.parquet", "val.parquet"]
    assert (target / "train.parquet").read_text() == "whole"

    with written_whole(target) as staging:  # a second writer of the same output: the first one's stays
        (staging / "train.parquet").write_text("second")
    assert (target / "train.parquet").read_text() == "whole"

    summary = location(bucket) / "run" / "summary.json"
    for text in ("first", "second"):
        with written_whole(summary, folder=False, replace=True) as staging:
            staging.write_text(text)
    assert committed(summary) and summary.read_text() == "second"


def test_a_stored_folder_is_copied_to_the_node_once_per_commit(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDSBS_CACHE_DIR", str(tmp_path / "cache"))
    model = location(bucket) / "model"
    with written_whole(model, replace=True) as staging:
        (staging / "config.json").write_text("1")
    first = local_copy(model)
    assert (first / "config.json").read_text() == "1" and local_copy(model) == first  # no second download
    with written_whole(model, replace=True) as staging:
        (staging / "config.json").write_text("2")
    second = local_copy(model)
    assert second != first and (second / "config.json").read_text() == "2"
    assert local_copy(tmp_path) == tmp_path  # a local folder is read where it is


def test_a_run_directory_in_a_bucket_holds_the_config_summary_and_tables(bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config(output_dir=f"{bucket}/runs", tag="stored")
    run = open_run(config)
    assert str(run.root).startswith(f"{bucket}/runs/stored-") and run_dir_for(config).root == run.root
    assert run.config_file.is_file() and list(tmp_path.iterdir()) == []  # no local folder named "s3:"
    run.update_summary("corpus", {"train": 3})
    run.update_summary("teacher", {"rows": 3})
    assert run.read_summary() == {"corpus": {"train": 3}, "teacher": {"rows": 3}}
    with written_whole(run.corpus) as folder:
        pq.write_table(pa.table({"id": ["a", "b"]}), folder / "train.parquet")
    file = run.corpus_file("train")
    assert pq.read_table(file.path, filesystem=file.fs)["id"].to_pylist() == ["a", "b"]
    assert run.load_config(["train.seed=3"]).train.seed == 3


def test_a_relative_output_dir_is_refused_in_a_job_submitted_with_a_working_dir(tmp_path, monkeypatch, bucket):
    from raydsbs.config import ConfigError

    monkeypatch.chdir(tmp_path)
    job = {"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}, "metadata": {}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(job))
    with pytest.raises(ConfigError) as refused:
        open_run(Config(output_dir="runs"))
    assert "gcs://_ray_pkg_0123.zip" in str(refused.value) and "output_dir=s3://BUCKET/runs" in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
    for shared in (f"{bucket}/runs", str(tmp_path / "shared")):  # storage every node may reach
        assert open_run(Config(output_dir=shared)).config_file.is_file()
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert open_run(Config(output_dir="runs")).root.local_path().parent == tmp_path / "runs"  # not a job
