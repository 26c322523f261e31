"""The typed configuration of a raydsbs run.

Every default lives here, once. A YAML file (see ``jobs/``) overrides these
defaults and ``a.b=c`` arguments override the YAML. The resolved config is
saved in the run directory; :func:`config_hash` names that directory.

This module is the schema only (types, ranges, checks within it) and imports nothing of the
package; ``raydsbs/resolve.py`` loads configs, adds the checks that need a registry (task, preset,
exemplars) and reports every problem in one :class:`ConfigError`.

A bad config reports every problem at once::

    ConfigError: 2 problem(s) in jobs/quickstart.yaml:
      train.rationale_weight = -1: Input should be greater than or equal to 0
      train.method = 'cot': Input should be 'step_by_step', 'standard_finetune', 'standard_distill' or 'cot_finetune'
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Method = Literal["step_by_step", "standard_finetune", "standard_distill", "cot_finetune"]
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]


# Marks a key that changes how a stage runs, not what it writes: a teacher.* one a rerun on a run directory
# may change (raydsbs/rundir.py) and a sweep may vary; an eval.* one that does not make a student score again.
HOW_IT_RUNS = {"how_it_runs": True}


def how_it_runs(section: type[BaseModel]) -> set[str]:
    """The keys of ``section`` marked :data:`HOW_IT_RUNS`."""
    return {name for name, field in section.model_fields.items() if field.json_schema_extra == HOW_IT_RUNS}


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(Section):
    name: str = Field(
        "arith",
        description="A registered task (arith: embedded; svamp, cqa, esnli, anli: the paper's) or a task .yaml path.",
    )
    num_train: int = Field(320, ge=1, description="Rows in the train split (arith: generated; others: at most).")
    num_val: int = Field(64, ge=1, description="Rows in the validation split, used for model selection.")
    num_test: int = Field(128, ge=1, description="Rows in the held-out test split, used only for the final score.")
    data_dir: str | None = Field(
        None,
        description="Folder of the paper's released files (<task>_train.json, ...), e.g. ../shared/data/dss/svamp.",
    )
    train_file: str | None = Field(
        None,
        description=(
            "Train rows: a data file (JSONL, JSON, Parquet or CSV; lines may be .gz/.zst/.bz2), a folder of them or a "
            "glob, local or a storage URI (read through Ray Data, a task per file); needs test_file."
        ),
    )
    val_file: str | None = Field(
        None, description="Validation rows, as train_file; without them, validation is carved from train."
    )
    test_file: str | None = Field(None, description="Held-out rows, as train_file.")
    max_input_chars: int = Field(20000, ge=1, description="Longer inputs are rejected (input_too_long), not truncated.")
    parser: Literal["raydsbs", "paper"] = Field(
        "raydsbs", description="How teacher completions are read: raydsbs's parsers, or the paper authors' own rules."
    )
    seed: int = Field(0, description="Seed of the generator and of the train/validation split.")


class TeacherConfig(Section):
    backend: Literal["vllm", "openai", "replay"] = Field(
        "vllm",
        description="vllm: vLLM through ray.data.llm; openai: any OpenAI-compatible HTTP endpoint; "
        "replay: completions generated before (the paper's files, or teacher.replay_file).",
    )
    model: str = Field(
        "bundled:smollm2-135m-instruct",
        description="Hugging Face name or local folder of the teacher ('bundled:smollm2-135m-instruct': offline).",
    )
    num_shots: int = Field(4, ge=0, description="Few-shot chain-of-thought exemplars in each prompt.")
    max_new_tokens: int = Field(64, ge=1, description="Generation limit per completion.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 is greedy.")
    samples: int = Field(
        1,
        ge=1,
        description="Completions per row; with more than 1 the label is a majority vote (needs temperature > 0).",
    )
    seed: int = Field(0, description="Base seed of sampling; each (row, sample) gets its own seed, so reruns repeat.")
    require_gold_agreement: bool = Field(
        False, description="Keep only rows whose teacher label matches the gold label."
    )
    answer_heldout: bool = Field(
        True,
        description="The teacher also answers the validation and test rows (never trained on), so its accuracy "
        "is measured on the test rows the students are scored on; false saves those generations.",
    )
    deduplicate: bool = Field(True, description="Drop rows whose input repeats an earlier row's (duplicate_input).")
    min_rationale_words: int = Field(1, ge=0, description="Shorter rationales are dropped (rationale_too_short).")
    max_rationale_words: int = Field(400, ge=1, description="Longer rationales are dropped (rationale_too_long).")
    rows_per_checkpoint: int = Field(
        64,
        ge=1,
        description="Rows written together; a killed run redoes at most the unwritten ones.",
        json_schema_extra=HOW_IT_RUNS,
    )
    max_model_len: int = Field(
        2048, ge=64, description="Context length; longer prompts are rejected (prompt_too_long)."
    )
    batch_size: int = Field(64, ge=1, description="Rows per batch sent to the engine.", json_schema_extra=HOW_IT_RUNS)
    max_num_batched_tokens: int = Field(
        4096,
        ge=64,
        description="Tokens per vLLM engine step (its offline default; long few-shot prompts prefill faster).",
        json_schema_extra=HOW_IT_RUNS,
    )
    replicas: int = Field(
        1, ge=1, description="vLLM engine replicas (one per GPU or CPU bundle).", json_schema_extra=HOW_IT_RUNS
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica.", json_schema_extra=HOW_IT_RUNS)
    cpus_per_replica: float = Field(
        1.0, gt=0, description="CPUs each replica reserves when no GPU is used.", json_schema_extra=HOW_IT_RUNS
    )
    use_gpu: bool = Field(
        False, description="Give each replica a GPU (clusters) instead of CPUs.", json_schema_extra=HOW_IT_RUNS
    )
    replica_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources each replica's bundles also reserve (one bundle per "
        "GPU), e.g. {teacher_node: 1} to keep replicas on the nodes that declare that resource, one per node.",
        json_schema_extra=HOW_IT_RUNS,
    )
    trust_remote_code: bool = Field(
        False,
        description="Let teacher.model run the Python code shipped with it (a hub model's own modelling files). "
        "Off: such a model fails to load instead of running unreviewed code.",
        json_schema_extra=HOW_IT_RUNS,
    )
    kv_cache_gib: int = Field(
        2, ge=1, description="KV cache size for the CPU engine (VLLM_CPU_KVCACHE_SPACE).", json_schema_extra=HOW_IT_RUNS
    )
    max_engine_restarts: int = Field(
        2,
        ge=0,
        description="vllm backend: restarts of a replica whose engine died, and "
        "retries of its batches; past them the stage fails with the engine's error "
        "(the rows already written are kept).",
        json_schema_extra=HOW_IT_RUNS,
    )
    endpoint: str | None = Field(None, description="openai backend: base URL, e.g. http://host:8000/v1.")
    api: Literal["completions", "chat"] = Field(
        "completions", description="openai backend: /completions or /chat/completions."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="openai backend: the environment variable holding the key (never the key).",
        json_schema_extra=HOW_IT_RUNS,
    )
    max_concurrent_requests: int = Field(
        8, ge=1, description="openai backend: requests in flight per worker.", json_schema_extra=HOW_IT_RUNS
    )
    max_retries: int = Field(
        4,
        ge=0,
        description="openai backend: retries of a failed request (429, 5xx, timeouts).",
        json_schema_extra=HOW_IT_RUNS,
    )
    request_timeout_s: float = Field(
        120.0,
        gt=0,
        description="openai backend: seconds before a request counts as failed.",
        json_schema_extra=HOW_IT_RUNS,
    )
    max_retry_wait_s: float = Field(
        60.0,
        gt=0,
        description="openai backend: the longest wait before a retry, "
        "whatever the server's Retry-After asks (longer ones are cut, and logged).",
        json_schema_extra=HOW_IT_RUNS,
    )
    replay_file: str | None = Field(
        None,
        description="replay backend: JSONL/Parquet with id and completion, or id, rationale and label; "
        "without it, the paper's files in task.data_dir.",
    )

    @property
    def prefills_whole_prompts(self) -> bool:
        """Sampling (a seed per request) on a vLLM-CPU engine: each prompt is prefilled in one step, never split
        over two (vLLM-CPU 0.32 crashes its engine then: "CPU Generator does not use offset")."""
        return not self.use_gpu and self.temperature > 0

    @model_validator(mode="after")
    def _check_sampling_and_limits(self):
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("teacher.samples > 1 needs teacher.temperature > 0: greedy samples are all the same")
        if self.min_rationale_words > self.max_rationale_words:
            raise ValueError("teacher.min_rationale_words is above teacher.max_rationale_words")
        if self.backend == "vllm" and self.prefills_whole_prompts and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                "sampling (teacher.temperature > 0) on CPU needs teacher.max_num_batched_tokens >= "
                f"teacher.max_model_len ({self.max_num_batched_tokens} < {self.max_model_len})"
            )
        return self


class LoraConfig(Section):
    rank: int = Field(16, ge=1, description="Rank r of each low-rank update.")
    alpha: float = Field(32.0, gt=0, description="Updates are scaled by alpha / rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' inputs.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names that get adapters (e.g. [q_proj, v_proj]); all-linear: every linear "
        "layer but the output head.",
    )


class StudentConfig(Section):
    preset: str = Field(
        "t5-tiny",
        description="A student preset: built from config (t5-tiny, llama-tiny, ...) or pretrained "
        "(t5-v1_1-base, flan-t5-xxl, smollm2-135m, ...); `raydsbs presets` lists them with the GPUs each needs.",
    )
    pretrained: str | None = Field(
        None, description="Hugging Face name or local folder of any seq2seq or causal student; replaces the preset."
    )
    task_marker: Literal["input", "output"] = Field(
        "input",
        description="input: the paper's 'predict: x' / 'explain: x' prefixes, a pass per task; output: the "
        "marker starts the target, so the input is read once for both tasks (a seq2seq encoder runs once; a causal "
        "student reads one packed sequence, its two targets masked from each other).",
    )
    trust_remote_code: bool = Field(
        False,
        description="Let student.pretrained run the Python code shipped with it. Off: such a model fails to load.",
    )
    dropout: float = Field(
        0.1, ge=0, lt=1, description="Dropout of a student built from config (pretrained ones keep theirs)."
    )
    vocab_size: int = Field(
        1000, ge=64, description="Size of the tokenizer trained on the run's own texts (no pretrained)."
    )
    max_input_tokens: int = Field(160, ge=8, description="Inputs are cut to this many tokens.")
    max_label_tokens: int = Field(16, ge=2, description="Label targets are cut to this many tokens.")
    max_rationale_tokens: int = Field(96, ge=2, description="Rationale targets are cut to this many tokens.")
    lora: LoraConfig | None = Field(
        None,
        description="Train LoRA adapters (peft) instead of every weight, e.g. student.lora={rank: 16}; the "
        "final model/ has them merged in. None: full fine-tuning.",
    )


class TrainConfig(Section):
    method: Method = Field(
        "step_by_step",
        description="step_by_step: labels + rationales as two tasks; standard_finetune: gold labels only; "
        "standard_distill: teacher labels only; cot_finetune: the rationale then the label as one target.",
    )
    label_source: Literal["gold", "teacher"] = Field(
        "gold",
        description="Labels learned beside the teacher's rationales by step_by_step and cot_finetune "
        "(the paper reports both).",
    )
    rationale_weight: float = Field(
        1.0, ge=0, description="λ in loss = label_loss + λ · rationale_loss (paper's code: α=0.5 ↔ λ=1)."
    )
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="Fraction of the train split used (the paper's data-size axis)."
    )
    epochs: int = Field(20, ge=1, description="Passes over the training set (unless train.max_steps is set).")
    max_steps: int | None = Field(
        None,
        ge=1,
        description="Train this many optimizer steps, over as many passes as that takes, instead of "
        "train.epochs: the same budget at every training-set fraction, as in the paper.",
    )
    batch_size: int = Field(32, ge=1, description="Examples per worker per step (each example gives 1 or 2 task rows).")
    learning_rate: float = Field(3e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    num_workers: int = Field(2, ge=1, description="Ray Train workers.")
    cpus_per_worker: float = Field(
        0.9, gt=0, description="CPUs each worker reserves (fractions keep 2-core machines from hanging)."
    )
    use_gpu: bool = Field(False, description="One GPU per worker.")
    zero_stage: Literal[0, 1, 2, 3] = Field(0, description="DeepSpeed ZeRO stage; 0 trains with plain DDP.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs and on CPUs with bf16 instructions (avx512_bf16, AMX), else fp32. "
        "fp16 needs a GPU and is refused for T5 (it overflows).",
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches summed into one optimizer step.")
    offload_optimizer: bool = Field(False, description="ZeRO 1-3: keep optimizer states in CPU memory.")
    offload_parameters: bool = Field(False, description="ZeRO-3: keep parameters in CPU memory.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are clipped to this norm.")
    length_bucketing: bool = Field(True, description="Batch examples of similar length together (less padding).")
    eval_every_steps: int | None = Field(
        None, ge=1, description="Validate and checkpoint every N optimizer steps; None: at the end of each epoch."
    )
    max_failures: int = Field(
        2, ge=0, description="Worker failures a training survives (it restarts from its checkpoint)."
    )
    seed: int = Field(0, description="Seed of initialisation, subsampling and batch order.")

    @model_validator(mode="after")
    def _offload_needs_zero(self):
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("train.offload_optimizer needs train.zero_stage 1, 2 or 3")
        if self.offload_parameters and self.zero_stage != 3:
            raise ValueError("train.offload_parameters needs train.zero_stage=3 (only ZeRO-3 partitions parameters)")
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError("train.precision=fp16 needs a GPU (train.use_gpu=true); on CPUs use bf16 or fp32")
        return self

    def dtype_name(self, cpu_has_bf16: bool = False, gpu_has_bf16: bool = False) -> str:
        """The compute precision this run uses: fp32, bf16 or fp16. ``auto`` asks the device that trains: bf16
        where it computes bf16 natively (GPUs from Ampere on; CPUs with avx512_bf16 or AMX), else fp32 (a T4 or
        V100 has no bf16, and fp16 needs loss scaling and overflows T5)."""
        if self.precision == "auto":
            return "bf16" if (gpu_has_bf16 if self.use_gpu else cpu_has_bf16) else "fp32"
        return self.precision


class EvalConfig(Section):
    batch_size: int = Field(64, ge=1, description="Questions a student answers at once when it is scored.")
    max_new_tokens: int = Field(16, ge=1, description="Tokens generated for a label.")
    actors: int | None = Field(
        None,
        ge=0,
        description="Ray Data actors that score a student, each with its own copy on the device of a training "
        "worker (one GPU each with train.use_gpu, else train.cpus_per_worker CPUs); 0: in the driver's process. "
        "Unset: train.num_workers actors with train.use_gpu, the driver's process on CPUs.",
        json_schema_extra=HOW_IT_RUNS,
    )

    def scoring(self) -> dict:
        """The keys that decide the scores (not how many processes compute them)."""
        return self.model_dump(mode="json", exclude=how_it_runs(EvalConfig))


class Range(Section):
    low: float = Field(description="Smallest value drawn.")
    high: float = Field(description="Largest value drawn.")
    log: bool = Field(False, description="Draw uniformly on a log scale (learning rates, λ across magnitudes).")

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class SweepConfig(Section):
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted config key -> values; grid search trains every combination, random search draws one "
        "value of each key per trial. Empty: `raydsbs run` trains the config's one student and sweeps nothing.",
    )
    search: Literal["grid", "random"] = Field(
        "grid",
        description="grid: every combination of sweep.grid; random: sweep.num_samples trials, each drawing "
        "from sweep.grid's lists and sweep.ranges.",
    )
    ranges: dict[str, Range] = Field(
        default_factory=dict,
        description="random search: dotted config key -> {low, high, log}, a number drawn "
        "per trial, e.g. train.rationale_weight: {low: 0.1, high: 10, log: true}.",
    )
    num_samples: int = Field(8, ge=1, description="random search: how many trials are drawn.")
    seed: int = Field(0, description="random search: seed of the draws, so a rerun draws the same trials.")
    scheduler: Literal["none", "asha"] = Field(
        "none",
        description="asha: stop trials whose validation label loss trails the others' at the same point "
        "(ASHA; trials report it at each checkpoint, train.eval_every_steps).",
    )
    grace_reports: int = Field(2, ge=1, description="asha: checkpoints every trial reaches before it can be stopped.")
    cpus_per_trial: float = Field(
        0.1, ge=0, description="CPUs the trial's driver reserves (its workers reserve their own)."
    )
    max_concurrent_trials: int = Field(1, ge=1, description="Trials run at once.")

    @model_validator(mode="after")
    def _ranges_need_random_search(self):
        if self.ranges and self.search != "random":
            raise ValueError(
                "sweep.ranges are drawn by random search: set sweep.search=random, or list values in sweep.grid"
            )
        return self


class RayConfig(Section):
    address: str | None = Field(
        None,
        description=(
            "Ray cluster address (or $RAY_ADDRESS); 'auto' joins the cluster started on this machine with "
            "`ray start`; None starts a private local one."
        ),
    )
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs of a local cluster; None declares at least 4 so 2-core machines don't hang.",
    )


class ServeConfig(Section):
    """How ``raydsbs serve`` puts a trained student behind Ray Serve (never part of a run directory's identity)."""

    host: str = Field("127.0.0.1", description="Address the HTTP API listens on (0.0.0.0: beyond this machine).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API.")
    replicas: int = Field(1, ge=1, description="Copies of the student answering requests, each a Ray Serve replica.")
    cpus_per_replica: float = Field(1.0, gt=0, description="CPUs each replica reserves (and computes on).")
    use_gpu: bool = Field(False, description="One GPU per replica (the student computes there).")
    max_batch_size: int = Field(16, ge=1, description="Requests a replica answers in one generate call.")
    batch_wait_timeout_s: float = Field(
        0.01, ge=0, description="How long a replica waits for more requests before answering a batch."
    )
    max_new_tokens: int = Field(
        128, ge=1, description="Generation limit of each output, the label's and the rationale's (as raydsbs predict)."
    )
    engine: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="What generates: transformers (T5 and causal students, requests batched by Ray Serve) or vllm "
        "(causal students only, continuous batching).",
    )
    kv_cache_gib: int = Field(1, ge=1, description="vllm engine on CPUs: its KV cache (VLLM_CPU_KVCACHE_SPACE).")


class CostConfig(Section):
    """Prices for the report's cost section (never part of a run directory's identity); unset: resource-hours only."""

    cpu_hour: float | None = Field(None, ge=0, description="Price of one CPU for an hour (any currency).")
    gpu_hour: float | None = Field(None, ge=0, description="Price of one GPU for an hour (the same currency).")
    api_input_per_mtok: float | None = Field(
        None, ge=0, description="An API teacher's (teacher.backend=openai) price per million prompt tokens."
    )
    api_output_per_mtok: float | None = Field(
        None, ge=0, description="An API teacher's (teacher.backend=openai) price per million generated tokens."
    )
    margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Validation accuracy within which a smaller student or training set counts as good as the best "
        "(the report's recommendation).",
    )


class TrackingConfig(Section):
    """Where trainings and sweeps are also logged (never part of a run directory's identity; raydsbs/tracking.py)."""

    mlflow_uri: str | None = Field(
        None,
        description="MLflow tracking URI (http://host:5000, sqlite:///mlflow.db, file:///path): each training logs "
        "its config, its metrics at every checkpoint, its model folder and its val/test accuracy; a sweep each trial.",
    )
    experiment: str | None = Field(
        None, description="The MLflow experiment and the W&B group; None: the run directory's name."
    )
    tensorboard: bool = Field(
        True,
        description="TensorBoard event files of each training in <run>/tensorboard/<training>/: every step's loss "
        "and every checkpoint's metrics (a sweep's trials also get Tune's own, under sweep/).",
    )
    wandb_project: str | None = Field(
        None,
        description="Weights & Biases project: each training a W&B run (config, every step's and checkpoint's "
        "metrics, its scores), a sweep each trial. The key from WANDB_API_KEY or `wandb login`; WANDB_MODE=offline "
        "keeps the runs in <run>/wandb/ for `wandb sync`.",
    )


class Config(Section):
    tag: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$", description="Readable part of the run directory name.")
    output_dir: str = Field("runs", description="Where run directories are created.")
    task: TaskConfig = Field(default_factory=TaskConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig, json_schema_extra=HOW_IT_RUNS)
    cost: CostConfig = Field(default_factory=CostConfig, json_schema_extra=HOW_IT_RUNS)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, json_schema_extra=HOW_IT_RUNS)

    @model_validator(mode="after")
    def _cot_needs_heldout_answers(self):
        if self.train.method == "cot_finetune" and not self.teacher.answer_heldout:
            raise ValueError(
                "train.method=cot_finetune selects its checkpoint on the teacher's rationales for the "
                "validation rows: it needs teacher.answer_heldout=true"
            )
        return self


class ConfigError(ValueError):
    """Every problem of a config, each naming the key, the value and what is allowed."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {source}:\n{lines}")


def schema_problems(error: ValidationError) -> list[str]:
    """One line per problem the schema found: the key, the value given and what is allowed."""
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        value = item.get("input")
        shown = "(missing)" if item["type"] == "missing" else repr(value)
        if item["type"] == "extra_forbidden":
            problems.append(f"{key} = {shown}: unknown key")
        elif not key:  # a check across sections: its message names the keys
            problems.append(item["msg"].removeprefix("Value error, "))
        else:
            problems.append(f"{key} = {shown}: {item['msg']}")
    return problems


def config_hash(config: BaseModel, length: int = 8) -> str:
    """A short, stable hash of a resolved config (or section)."""
    # a section marked HOW_IT_RUNS (serve, cost, tracking) says how outputs are used, not which: the same run and
    # the same trainings
    canonical = json.dumps(config.model_dump(mode="json", exclude=how_it_runs(type(config))), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
