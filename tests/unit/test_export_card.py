"""The exported student's model card from the run's figures (the export itself runs in
tests/integration/test_pipeline.py, on the quickstart job's student)."""

from __future__ import annotations

import yaml

from raydsbs.export import model_card

FACTS = {
    "training": "step_by_step-f0.5-l1-s0-abc123",
    "task": "svamp",
    "teacher": "replayed completions from ../shared/data/dss/svamp",
    "student": {"preset": "smollm2-135m", "pretrained": "bundled:smollm2-135m-instruct"},
    "lora": {"rank": 16},
    "parameters": 134_515_008,
    "method": "step_by_step",
    "rationale_weight": 0.5,
    "train_fraction": 0.5,
    "seed": 0,
    "corpus_rows": {"train": 700, "val": 100, "test": 200},
    "test_inputs_seen_in_train": 3,
    "unseen_test_accuracy": 0.2872,
    "teacher_unseen_test_accuracy": 0.7744,
    "examples": 350,
    "val_accuracy": 0.31,
    "test_accuracy": 0.295,
    "teacher_test_accuracy": 0.775,
    "untrained_test_accuracy": 0.005,
    "floor_test_accuracy": 0.09,
    "floor": "always '2'",
    "training_seconds": 412.3,
    "optimizer_steps": 200,
    "train_workers": 1,
    "train_gpus": False,
}


def test_the_card_states_the_student_beside_the_teacher_the_untrained_student_and_the_floor():
    card = model_card(FACTS, "causal")
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the bundled GGUF holds
    assert metadata["pipeline_tag"] == "text-generation"
    assert metadata["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.295
    for row in ("| this student | 29.5 % |", "| 77.5 % |", "| the untrained student | 0.5 % |", "| 9.0 % |"):
        assert row in card
    assert "350 examples" in card and "λ = 0.5" in card and "412 s on 1 worker(s) (CPUs)" in card
    assert (
        "3 test rows repeat a train row's input (case and spacing aside): on the other 197, this student 28.7 %, "
        "the teacher 77.4 %" in card
    )


def test_a_student_built_from_config_names_no_base_model_and_standard_methods_no_lambda():
    facts = {**FACTS, "student": {"preset": "t5-tiny", "pretrained": None}, "lora": None, "method": "standard_finetune"}
    facts["teacher_test_accuracy"] = facts["test_inputs_seen_in_train"] = None  # a run that did not count them
    card = model_card(facts, "seq2seq")
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert "base_model" not in metadata and metadata["pipeline_tag"] == "text2text-generation"
    assert "built from config (t5-tiny)" in card and "λ" not in card and "not measured" in card
    assert "repeat a train row's input" not in card
