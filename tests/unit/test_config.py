from pathlib import Path

import pytest

from raydsbs.config import Config, ConfigError, config_hash
from raydsbs.resolve import load_config, with_overrides
from raydsbs.rundir import open_run, run_dir_for
from tests.conftest import REPO


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  rationale_weight: 0.5\n")
    config = load_config(path, ["train.rationale_weight=2", "task.name=svamp"])
    assert config.train.epochs == 7
    assert config.train.rationale_weight == 2.0
    assert config.task.name == "svamp"
    assert config.train.batch_size == Config().train.batch_size


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  method: cot\n  rationale_weight: -1\nbogus: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["task.name=nope", "student.preset=huge"])
    problems = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 5
    assert "train.method = 'cot'" in problems and "'step_by_step'" in problems
    assert "train.rationale_weight = -1" in problems
    assert "bogus = 1: unknown key" in problems
    assert "task.name = 'nope'" in problems and "arith" in problems
    assert "student.preset = 'huge'" in problems and "t5-tiny" in problems


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_sampling_on_a_cpu_engine_needs_room_to_prefill_a_whole_prompt_in_one_step():
    sampling = ["teacher.temperature=0.7", "teacher.max_num_batched_tokens=1024", "teacher.max_model_len=2048"]
    with pytest.raises(ConfigError, match="teacher.max_num_batched_tokens >= teacher.max_model_len"):
        load_config(None, sampling)
    load_config(None, [*sampling, "teacher.use_gpu=true"])  # CUDA engines split prefills safely
    load_config(None, [*sampling, "teacher.backend=openai"])  # the server's own settings apply


def test_run_directory_is_tag_plus_hash_and_keeps_config(tmp_path):
    config = load_config(None, [f"output_dir={tmp_path}", "tag=demo"])
    run = open_run(config)
    assert run.root.name == f"demo-{config_hash(config)}"
    assert run.load_config() == config
    other = with_overrides(config, {"train.rationale_weight": 0.25})
    assert run_dir_for(other).root != run.root


def test_an_override_that_would_change_an_existing_output_is_refused_with_what_to_do(tmp_path):
    config = load_config(None, [f"output_dir={tmp_path}", "tag=demo"])
    run = open_run(config)
    # nothing made yet: a teacher override is used and saved, so later commands see it too
    assert run.load_config(["teacher.samples=3", "teacher.temperature=0.7"]).teacher.samples == 3
    assert run.load_config().teacher.samples == 3
    run.corpus.mkdir()
    (run.corpus / "train.parquet").write_bytes(b"")
    with pytest.raises(ConfigError) as refused:
        run.load_config(["task.num_train=5"])
    (problem,) = refused.value.problems
    assert f"task.num_train: this run's corpus was made with {config.task.num_train}, the override says 5" in problem
    assert "Run the config file with the override instead" in problem and str(run.corpus) in problem
    run.teacher.mkdir()
    (run.teacher / "requests").mkdir()
    with pytest.raises(ConfigError, match="teacher.samples: this run's teacher was made with 3"):
        run.load_config(["teacher.samples=5"])
    with pytest.raises(ConfigError, match="task.parser: this run's teacher"):
        run.load_config(["task.parser=paper"])
    # how the teacher runs, the trainings and the scoring: not outputs of this directory's stages
    changed = run.load_config(["teacher.replicas=2", "train.rationale_weight=0.5", "eval.batch_size=8"])
    assert (changed.teacher.replicas, changed.train.rationale_weight, changed.eval.batch_size) == (2, 0.5, 8)
    assert run.load_config().teacher.replicas == config.teacher.replicas  # not saved


def test_eval_settings_are_not_part_of_a_trainings_name():
    from raydsbs.student.launcher import training_name

    assert training_name(Config()) == training_name(with_overrides(Config(), {"eval.max_new_tokens": 64}))


def test_how_a_student_is_served_priced_or_tracked_names_no_new_run_or_training():
    """serve.*, cost.* and tracking.* are how outputs are used: the run directory and the trainings keep their
    names (the hash of the defaults is the one it had before those sections existed)."""
    from raydsbs.student.launcher import training_name

    served = with_overrides(
        Config(),
        {
            "serve.port": 9000,
            "serve.replicas": 3,
            "cost.cpu_hour": 0.1,
            "tracking.mlflow_uri": "http://x",
            "tracking.tensorboard": False,
            "tracking.wandb_project": "p",
        },
    )
    assert config_hash(served) == config_hash(Config()) == "0eeb7012"
    assert training_name(served) == training_name(Config())


@pytest.mark.parametrize("path", sorted((REPO / "jobs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path):
    load_config(path)


def test_standard_methods_ignore_lambda_in_their_training_name():
    from raydsbs.student.launcher import training_name

    base = Config()
    finetune = [
        with_overrides(base, {"train.method": "standard_finetune", "train.rationale_weight": w}) for w in (0.5, 2)
    ]
    assert training_name(finetune[0]) == training_name(finetune[1])
    assert training_name(finetune[0]).startswith("standard_finetune-f1-s0-")
    steps = [with_overrides(base, {"train.rationale_weight": w}) for w in (0.5, 2)]
    assert training_name(steps[0]) != training_name(steps[1])
    assert training_name(steps[0]).startswith("step_by_step-f1-l0.5-s0-")


def test_cot_finetune_needs_the_teachers_validation_answers():
    with pytest.raises(ConfigError, match="teacher.answer_heldout=true"):
        load_config(None, ["train.method=cot_finetune", "teacher.answer_heldout=false"])


def test_lora_is_refused_where_it_cannot_work_with_the_reason():
    with pytest.raises(ConfigError, match="built from config with random weights"):
        load_config(None, ["student.lora={rank: 8}"])
    with pytest.raises(ConfigError, match="ZeRO-3 shards the frozen base"):
        load_config(None, ["student.preset=smollm2-135m", "student.lora={}", "train.zero_stage=3"])
    config = load_config(None, ["student.preset=smollm2-135m", "student.lora.rank=8", "train.zero_stage=2"])
    assert (config.student.lora.rank, config.student.lora.target_modules) == (8, "all-linear")
