"""Scoring a student as a Ray Data stage of actors (eval.actors, what GPU runs do by default: one copy of the
student per training worker's device) gives exactly the predictions of scoring it in the driver's process,
for a trained student and for the untrained one."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from raydsbs.evaluate import score
from raydsbs.resolve import with_overrides
from raydsbs.student.learner import MODEL_SUBDIR
from tests.integration.helpers import Background

pytestmark = pytest.mark.integration


def test_actors_and_the_driver_score_a_student_alike(tmp_path):
    import ray

    from raydsbs.rundir import RunDir

    command = ["train", "tests/integration/tiny.yaml", f"output_dir={tmp_path}", "tag=eval"]
    overrides = ["train.method=standard_finetune", "train.num_workers=1", "train.max_steps=20", "task.num_val=24"]
    returncode, output = Background(*command, *overrides, log=tmp_path / "train.log").finish()
    assert returncode == 0, output[-4000:]
    (root,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    run = RunDir(root)
    config = run.load_config(overrides)
    (training,) = run.student.glob("standard_finetune-*")
    corpus = {
        split: pq.read_table(run.corpus_file(split).path, columns=["id"])["id"].to_pylist() for split in ("val", "test")
    }
    try:
        for folder in (training / MODEL_SUBDIR, None):  # the trained student, then the untrained one
            in_driver = score(with_overrides(config, {"eval.actors": 0}), run, folder)
            by_actors = score(with_overrides(config, {"eval.actors": 2, "eval.batch_size": 7}), run, folder)
            assert by_actors == in_driver  # every figure and every prediction row, in the same order
            _, rows = in_driver
            assert [row["id"] for row in rows] == corpus["val"] + corpus["test"] and len(corpus["val"]) == 24
    finally:
        ray.shutdown()
