"""``raydsbs``: the command line.

    raydsbs run CONFIG [a.b=c ...]        the whole pipeline
    raydsbs generate|train|evaluate|sweep|report CONFIG [a.b=c ...]
    raydsbs predict (CONFIG [a.b=c ...] | --model FOLDER) [--input TEXT ...]
    raydsbs serve (CONFIG [a.b=c ...] | --model FOLDER [a.b=c ...])
    raydsbs export CONFIG [a.b=c ...] --to DIR [--push-to-hub REPO]
    raydsbs presets | doctor

CONFIG is a YAML file (see jobs/) or an existing run directory, whose saved
config.yaml is then the base and which receives the stage's outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import BaseModel

from raydsbs.config import Config, ConfigError, to_yaml
from raydsbs.resolve import load_config
from raydsbs.rundir import RunDir, open_run
from raydsbs.storage import Location, local_copy, location

logger = logging.getLogger("raydsbs")

STAGES = {
    "run": "the whole pipeline: generate -> train -> evaluate -> sweep -> report",
    "generate": "the teacher writes a rationale and a label for each train row",
    "train": "train one student (train.method) on Ray Train",
    "evaluate": "score the trained student on the val and test splits",
    "sweep": "Ray Tune over sweep.grid (grid or random search, optional ASHA): the teacher's outputs first if a "
    "method needs them, each trial a Ray Train run, then the report",
    "report": "report.md and plots from the run's evaluated students",
    "predict": "print the trained student's label and rationale for each input (--input, or lines of stdin)",
    "serve": "the trained student behind Ray Serve: an HTTP JSON API answering a label and, asked, the rationale "
    "(serve.*: host, port, replicas, resources, batching); runs until stopped (Ctrl-C)",
    "export": "the trained student as a self-contained Hugging Face folder (--to DIR) with a model card holding the "
    "run's evidence; --push-to-hub REPO uploads it",
    "presets": "list the student presets: size, GPUs and ZeRO stage each needs",
    "doctor": "check this environment (packages, GPUs, Ray, models, storage) and say how to fix problems",
}


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """One line per config key: dotted name, default and description (for --help)."""
    lines = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += config_keys(annotation, prefix + name + ".")
            continue
        default = field.get_default(call_default_factory=True)
        lines.append(f"  {prefix + name} = {default!r}\n      {field.description or ''}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raydsbs", description="Distilling Step-by-Step on Ray.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    epilog = "config keys (override any with key=value):\n" + "\n".join(config_keys())
    for name, help_text in STAGES.items():
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "presets":
            continue
        sub.add_argument(
            "config",
            nargs="?" if name in ("doctor", "predict", "serve") else None,
            help="a YAML config (e.g. jobs/quickstart.yaml) or an existing run directory",
        )
        sub.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help="dotted config keys to override, e.g. train.rationale_weight=0.5",
        )
        if name in ("predict", "serve"):
            sub.add_argument("--model", help="a trained student's model folder (instead of CONFIG)")
            sub.add_argument(
                "--trust-remote-code",
                action="store_true",
                help="let a --model folder with its own modelling code run it (off by default)",
            )
        if name == "export":
            sub.add_argument("--to", required=True, help="the folder to create (local or a storage URI)")
            sub.add_argument("--push-to-hub", metavar="REPO", help="then upload it to the Hugging Face Hub as REPO")
        if name == "predict":
            sub.add_argument("--input", action="append", help="an input text (repeatable); default: lines of stdin")
            sub.add_argument("--json", action="store_true", help="a JSON line per input: input, label, rationale")
    return parser


def presets() -> int:
    from raydsbs.student.presets import PRESETS

    print(f"{'preset':<16} {'kind':<8} {'params':>6}  {'weights':<32} {'GPUs':>4}  ZeRO  note")
    for name, preset in PRESETS.items():
        weights = preset.pretrained or "built from config"
        gpus = str(preset.gpus) if preset.gpus else "-"
        print(
            f"{name:<16} {preset.kind:<8} {preset.parameters:>6}  {weights:<32} {gpus:>4}  {preset.zero_stage:>4}  "
            f"{preset.note}"
        )
    return 0


def student_to_ask(args) -> tuple[Config, Location, bool]:
    """(config, model folder, whether its own code may run) of ``predict`` or ``serve``: the training the config
    or run directory names, or ``--model FOLDER`` (with the defaults and the overrides given)."""
    from raydsbs.student.launcher import training_name
    from raydsbs.student.learner import MODEL_SUBDIR

    if args.model:
        config = load_config(*_only_overrides(args.config, args.overrides))
        folder = location(args.model)
    elif args.config:
        config, run = resolve(args.config, args.overrides)
        folder = run.training(training_name(config)) / MODEL_SUBDIR
    else:
        raise ConfigError("the command line", ["give a config or run directory, or --model FOLDER"])
    if not (folder / "config.json").is_file():
        raise ConfigError("the command line", [f"no trained student at {folder}; run `raydsbs train` first"])
    return config, folder, args.trust_remote_code or config.student.trust_remote_code


def predict(args) -> int:
    """Label and rationale of each input from a trained student."""
    from raydsbs.student.inference import predict as student_predict
    from raydsbs.student.model import load_student

    config, folder, trust_remote_code = student_to_ask(args)
    inputs = args.input or [line.strip() for line in sys.stdin if line.strip()]
    model, tokenizer, fmt = load_student(local_copy(folder), trust_remote_code)
    outputs = {
        task: student_predict(model, tokenizer, fmt, inputs, task, config.serve.max_new_tokens)
        for task in ("label", "rationale")
    }
    for text, label, rationale in zip(inputs, outputs["label"], outputs["rationale"], strict=True):
        if args.json:
            print(json.dumps({"input": text, "label": label, "rationale": rationale}, ensure_ascii=False))
        else:
            print(f"input:     {text}\nlabel:     {label}\nrationale: {rationale}\n")
    return 0


def serve(args) -> int:
    """The student behind Ray Serve until this process is stopped (Ctrl-C, SIGTERM)."""
    import signal
    import threading

    from ray import serve as ray_serve

    from raydsbs.ray_session import start_ray
    from raydsbs.serve import serve_student

    config, folder, trust_remote_code = student_to_ask(args)
    if config.serve.engine == "vllm":
        _check_vllm_can_serve(folder)
    start_ray(config.ray)
    url = serve_student(str(folder), trust_remote_code, config.serve, config.task.max_input_chars)
    print(f'serving {folder} at {url} (POST {{"input": "...", "rationale": true}}); Ctrl-C stops it', flush=True)
    stopped = threading.Event()
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: stopped.set())
    stopped.wait()
    ray_serve.shutdown()
    return 0


def _check_vllm_can_serve(folder: Location) -> None:
    import importlib.util

    from raydsbs.student.model import student_format_of
    from raydsbs.teacher.backends import VLLM_INSTALL

    kind = student_format_of(folder).kind
    if kind != "causal":
        raise ConfigError(
            "the command line",
            [
                f"serve.engine = 'vllm': {folder} holds a {kind} student; vLLM serves causal students only "
                "(serve.engine=transformers serves both)"
            ],
        )
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "the command line",
            [f"serve.engine = 'vllm' needs vLLM: {VLLM_INSTALL}"],
        )


def export(args) -> int:
    """The student the config names, as a model folder with its card; pushed to the hub if asked."""
    from raydsbs.export import ExportError, export_student, push_to_hub
    from raydsbs.student.launcher import training_name

    config, run = resolve(args.config, args.overrides)
    try:
        folder = export_student(config, run, run.training(training_name(config)), args.to)
        print(f"exported: {folder}")
        if args.push_to_hub:
            print(f"pushed: {push_to_hub(folder, args.push_to_hub)}")
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def resolve(config_arg: str, overrides: list[str]) -> tuple[Config, RunDir]:
    """The config and run directory named by the command line."""
    path = location(config_arg)
    if path.is_dir():
        run = RunDir(path)
        if not run.config_file.is_file():
            raise ConfigError(
                config_arg, [f"{path} is a folder without config.yaml; give a YAML file or a run directory"]
            )
        return run.load_config(overrides), run
    config = load_config(config_arg, overrides)
    return config, open_run(config)


def _only_overrides(config_arg: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """(config, overrides) of a command whose config is optional: ``a.b=c`` in its place is the first override."""
    if config_arg and "=" in config_arg and not Path(config_arg).exists():
        return None, [config_arg, *overrides]
    return config_arg, overrides


def doctor(config_arg: str | None, overrides: list[str]) -> int:
    """Check the environment against a config (defaults when none is given); 1 when anything fails."""
    from raydsbs.doctor import format_checks, run_checks

    config_arg, overrides = _only_overrides(config_arg, overrides)
    try:
        config = load_config(config_arg, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    checks = run_checks(config)
    print(format_checks(checks))
    return 0 if all(check.ok for check in checks) else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S")
    if args.command == "doctor":
        return doctor(args.config, args.overrides)
    if args.command == "presets":
        return presets()
    if args.command in ("predict", "serve", "export"):
        try:
            return {"predict": predict, "serve": serve, "export": export}[args.command](args)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        config, run = resolve(args.config, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logger.info("run directory %s\n%s", run.root, to_yaml(config))
    from raydsbs import pipeline

    stage = getattr(pipeline, "run_all" if args.command == "run" else f"stage_{args.command}")
    outcome = stage(config, run)
    if args.command in ("run", "sweep", "report"):
        report, table = outcome
        print(f"\n{table}\n\nreport: {report}\nplots:  {run.plots}\nrun:    {run.root}")
    else:
        print(f"{args.command} done: {run.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
