"""Outputs written all or nothing (raydsbs.staging)."""

import os
import subprocess
import sys

import pytest

from raydsbs.staging import scratch_folder, written_whole


def test_an_output_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "corpus"
    with pytest.raises(RuntimeError), written_whole(target) as folder:
        (folder / "train.parquet").write_text("half")
        raise RuntimeError("killed midway")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with written_whole(target) as folder:
        (folder / "train.parquet").write_text("whole")
    assert (target / "train.parquet").read_text() == "whole" and list(tmp_path.iterdir()) == [target]


def test_the_first_of_two_writers_wins_unless_told_to_replace(tmp_path):
    target = tmp_path / "tokenized"
    with written_whole(target) as mine:
        (mine / "a").write_text("mine")
        with written_whole(target) as theirs:  # another trial, finishing first
            (theirs / "a").write_text("theirs")
    assert (target / "a").read_text() == "theirs" and list(tmp_path.iterdir()) == [target]
    summary = tmp_path / "summary.json"
    for text in ("one", "two"):
        with written_whole(summary, folder=False, replace=True) as staging:
            staging.write_text(text)
    assert summary.read_text() == "two"


def test_what_a_killed_writer_left_is_cleared_by_the_next(tmp_path):
    target = tmp_path / "model"
    # a writer that dies (SIGKILL) inside the block leaves its staging folder behind
    code = (
        "import os, signal\nfrom pathlib import Path\nfrom raydsbs.staging import written_whole\n"
        f"with written_whole(Path({str(target)!r})) as folder:\n"
        "    (folder / 'weights').write_text('half')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    (left,) = tmp_path.iterdir()
    assert ".staging-" in left.name and not target.exists()
    with written_whole(target) as folder:
        (folder / "weights").write_text("whole")
    assert list(tmp_path.iterdir()) == [target]
    with scratch_folder(tmp_path / "selection") as scratch:
        assert scratch.is_dir()
    assert not scratch.exists() and os.listdir(tmp_path) == ["model"]
