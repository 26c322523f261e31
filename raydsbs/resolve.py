"""A config's names resolved against the registries, reported with the schema's problems in one error.

``config.py`` is the schema: types, ranges and the checks within it, importing nothing of the package.
What needs a registry is checked here: the task (a registered name, or a task file that loads), the
student preset, enough exemplars for ``teacher.num_shots``, LoRA on pretrained weights only, and no fp16
with a T5. Every config the package builds comes through this module: :func:`load_config` (a YAML file
and ``a.b=c`` overrides), :func:`build_config` (a nested dict) and :func:`with_overrides` (a sweep point).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from raydsbs.config import Config, ConfigError, schema_problems
from raydsbs.student.model import fp16_refusal, is_t5_name, pretrained_source
from raydsbs.student.presets import PRESETS
from raydsbs.tasks import TASKS, TaskSpecError, get_task, is_task_file


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.rationale_weight=0.5"`` -> (["train", "rationale_weight"], 0.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError("overrides", [f"{text!r}: expected key=value, e.g. train.epochs=5"])
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def set_dotted(tree: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError("overrides", [f"{'.'.join(keys)}: {key} is not a section"])
        tree = node
    tree[keys[-1]] = value


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """A copy of ``tree`` with each ``a.b=c`` override set."""
    tree = json.loads(json.dumps(tree))
    for text in overrides:
        keys, value = parse_override(text)
        set_dotted(tree, keys, value)
    return tree


@cache
def _loaded_task(name: str, modified: float | None):
    return get_task(name)


def _task(name: str):
    """The task ``name``, read once per sweep rather than once per config (again when its file changes)."""
    path = Path(name)
    return _loaded_task(name, path.stat().st_mtime if is_task_file(name) and path.is_file() else None)


def _known_task(name: str) -> str | None:
    if is_task_file(name):
        try:
            _task(name)
        except TaskSpecError as error:
            return str(error)
        return None
    return None if name in TASKS else f"unknown task; known tasks: {', '.join(sorted(TASKS))}"


def _known_preset(name: str) -> str | None:
    return None if name in PRESETS else f"unknown preset; known presets: {', '.join(sorted(PRESETS))}"


# Names of one key: checked even when other keys have problems, so that one error lists them all.
NAME_CHECKS: dict[str, Callable[[Any], str | None]] = {"task.name": _known_task, "student.preset": _known_preset}


def _no_fp16_for_t5(config: Config) -> str | None:
    name = config.student.pretrained or config.student.preset
    built_t5 = not config.student.pretrained and PRESETS[config.student.preset].kind == "seq2seq"
    return fp16_refusal(config.train.precision, built_t5 or is_t5_name(name))


def _lora_fits(config: Config) -> str | None:
    if config.student.lora is None:
        return None
    if pretrained_source(config.student) is None:
        return (
            f"student.lora adapts pretrained weights, but student.preset={config.student.preset} is "
            "built from config with random weights: train it fully (student.lora=null) or pick a "
            "pretrained student (e.g. student.preset=smollm2-135m)"
        )
    if config.train.zero_stage == 3:
        return (
            "student.lora with train.zero_stage=3 is not supported: ZeRO-3 shards the frozen base "
            "weights, which the adapters' merge into model/ needs whole; LoRA's trainable states are "
            "small, so use train.zero_stage=2 (or 1, or 0 for DDP)"
        )
    return None


def _enough_exemplars(config: Config) -> str | None:
    if config.teacher.backend == "replay":
        return None
    available = len(_task(config.task.name).exemplars())
    if config.teacher.num_shots <= available:
        return None
    return (
        f"teacher.num_shots={config.teacher.num_shots}, but task {config.task.name} has {available} "
        f"exemplars: lower num_shots or add exemplars to the task"
    )


# Checks across sections: run once the schema and the names hold.
CONFIG_CHECKS: tuple[Callable[[Config], str | None], ...] = (_no_fp16_for_t5, _lora_fits, _enough_exemplars)


def _given_or_default(tree: dict, key: str) -> Any:
    section, field = key.split(".")
    given = tree.get(section)  # a mapping: the schema has accepted the section
    if isinstance(given, dict) and field in given:
        return given[field]
    return getattr(getattr(Config(), section), field)


def build_config(tree: dict, source: str = "config") -> Config:
    """Validate a nested dict into a :class:`Config`, raising one error that lists every problem."""
    config, problems, invalid = None, [], set()
    try:
        config = Config.model_validate(tree)
    except ValidationError as error:
        problems = schema_problems(error)
        invalid = {".".join(str(part) for part in item["loc"][:2]) for item in error.errors()}  # a section, a key
    for key, check in NAME_CHECKS.items():
        if key in invalid or key.split(".")[0] in invalid:
            continue  # the schema's problem with it is reported
        value = _given_or_default(tree, key)
        if isinstance(value, str) and (problem := check(value)):
            problems.append(f"{key} = {value!r}: {problem}")
    if config is not None and not problems:
        problems = [problem for check in CONFIG_CHECKS if (problem := check(config))]
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Defaults <- YAML file at ``path`` (optional) <- ``a.b=c`` overrides."""
    tree: dict = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(source, [f"no such config file: {path}"]) from None
        except yaml.YAMLError as error:
            raise ConfigError(source, [f"not valid YAML: {error}"]) from None
        if not isinstance(tree, dict):
            raise ConfigError(source, [f"expected a mapping of sections at the top, got {type(tree).__name__}"])
    if overrides:
        source += " + overrides"
    return build_config(apply_overrides(tree, list(overrides)), source)


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``config`` with dotted keys set, validated (used by sweeps)."""
    tree = config.model_dump()
    for key, value in overrides.items():
        set_dotted(tree, key.split("."), value)
    return build_config(tree, "sweep overrides")
