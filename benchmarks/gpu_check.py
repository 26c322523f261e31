"""The students' training step on a GPU: samples/s, tokens/s and model FLOPs utilisation (MFU).

Needs only torch, transformers and peft (and this repository's files: the T5 shape is the ``t5-base-scratch``
preset's, read from raydsbs/student/presets.py, which imports nothing). Two cases, each a few warm-up steps then
timed ones, random token ids (the speed of a step does not depend on what the tokens say):

- ``t5-base-scratch``: the 250M T5 v1.1 shape built from config, full fine-tuning with AdamW, bf16 autocast
  over fp32 weights (what ``train.precision=bf16`` does);
- ``smollm2-135m-lora``: SmolLM2-135M (built from its published shape, or ``--smollm2 FOLDER`` for the real
  weights) with LoRA r=16 on every linear layer, bf16 autocast.

    python benchmarks/gpu_check.py                     # on the GPU machine: under 10 minutes
    python benchmarks/gpu_check.py --peak-tflops 312   # an accelerator the table below does not know

Writes ``benchmarks/results/gpu_check-<gpu>.json``. MFU is the model's training FLOPs per second over the GPU's
dense bf16 peak: 6 FLOPs per parameter and token for full fine-tuning, 4 for LoRA (no weight gradients for the
frozen weights), plus attention's 12 x layers x width x sequence per token; T5's encoder parameters count
its source tokens and its decoder's (and the output layer) its target tokens.
``--device cpu --tiny`` runs the same code on small shapes (the test suite does).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from raydsbs.student.presets import PRESETS  # noqa: E402 - the repository's own shapes, no install needed

RESULTS = Path(__file__).resolve().parent / "results"
T5_VOCAB = 32128  # T5's own vocabulary size (the students built from config use their run's tokenizer)
# HuggingFaceTB/SmolLM2-135M's config.json (the bundled teacher and the smollm2-135m student are this model).
SMOLLM2_135M = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}
# Dense bf16 peak TFLOP/s (no sparsity) by a word in torch.cuda.get_device_name(); --peak-tflops overrides.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


def peak_tflops(device_name: str) -> float | None:
    """The table's peak for the first name found in ``device_name`` (whole words: L4 is not L40S)."""
    for word, tflops in PEAK_BF16_TFLOPS.items():
        if re.search(rf"\b{word}\b", device_name):
            return tflops
    return None


def t5_case(tiny: bool):
    from transformers import T5Config, T5ForConditionalGeneration

    shape = PRESETS["t5-tiny" if tiny else "t5-base-scratch"].shape
    vocab = 512 if tiny else T5_VOCAB
    model = T5ForConditionalGeneration(
        T5Config(vocab_size=vocab, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **shape)
    )
    source, target = (32, 16) if tiny else (256, 128)
    # Matrix-multiply parameters of each side: the embedding lookup is none, the tied output layer is the decoder's.
    embedding = model.shared.weight.numel()
    encoder = sum(p.numel() for p in model.encoder.parameters()) - embedding
    decoder = sum(p.numel() for p in model.parameters()) - encoder

    def batch(size: int, device) -> dict:
        return {
            "input_ids": torch.randint(2, vocab, (size, source), device=device),
            "labels": torch.randint(2, vocab, (size, target), device=device),
        }

    def flops_per_sample(factor: int) -> float:
        dense = factor * (encoder * source + decoder * target)
        layers, width = shape["num_layers"], shape["d_model"]
        attention = 12 * layers * width * (source * source + target * target + source * target)
        return dense + attention * factor / 6

    return "t5-base-scratch" if not tiny else "t5-tiny", model, batch, flops_per_sample, source + target, False


def smollm2_case(tiny: bool, folder: str | None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if folder:
        model = AutoModelForCausalLM.from_pretrained(folder)
    else:
        shape = PRESETS["llama-tiny"].shape if tiny else SMOLLM2_135M
        model = LlamaForCausalLM(LlamaConfig(**{"vocab_size": 512, **shape} if tiny else shape))
    config = model.config
    vocab, length = config.vocab_size, 64 if tiny else 512
    parameters = sum(p.numel() for p in model.parameters())
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM"))

    def batch(size: int, device) -> dict:
        ids = torch.randint(0, vocab, (size, length), device=device)
        return {"input_ids": ids, "labels": ids}

    def flops_per_sample(factor: int) -> float:
        attention = 12 * config.num_hidden_layers * config.hidden_size * length * length
        return factor * parameters * length + attention * factor / 6

    return "smollm2-135m-lora" if not tiny else "llama-tiny-lora", model, batch, flops_per_sample, length, True


def measure(case, device: torch.device, batch_size: int, steps: int, warmup: int, peak: float | None) -> dict:
    name, model, make_batch, flops_per_sample, tokens_per_sample, lora = case
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    batches = [make_batch(batch_size, device) for _ in range(4)]

    def step(batch: dict) -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # waits for the step: the timing is of finished work

    for index in range(warmup):
        step(batches[index % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for index in range(steps):
        step(batches[index % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    samples_per_s = steps * batch_size / seconds
    achieved = samples_per_s * flops_per_sample(4 if lora else 6)
    return {
        "case": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "batch_size": batch_size,
        "tokens_per_sample": tokens_per_sample,
        "steps": steps,
        "seconds": round(seconds, 2),
        "samples_per_s": round(samples_per_s, 2),
        "tokens_per_s": round(samples_per_s * tokens_per_sample, 1),
        "model_tflops_per_s": round(achieved / 1e12, 2),
        "mfu": round(achieved / (peak * 1e12), 4) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--t5-batch-size", type=int, default=32)
    parser.add_argument("--lora-batch-size", type=int, default=16)
    parser.add_argument("--smollm2", help="a folder with SmolLM2-135M's weights (default: its shape, random weights)")
    parser.add_argument("--peak-tflops", type=float, help="the accelerator's dense bf16 peak, for MFU")
    parser.add_argument("--tiny", action="store_true", help="small shapes: checks the script, measures nothing")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/gpu_check-<device name>.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run this on the GPU machine (or --device cpu --tiny to check the script)")
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    torch.manual_seed(0)
    import peft
    import transformers

    cases = [
        measure(t5_case(args.tiny), device, args.t5_batch_size, args.steps, args.warmup, peak),
        measure(smollm2_case(args.tiny, args.smollm2), device, args.lora_batch_size, args.steps, args.warmup, peak),
    ]
    result = {
        "device": name,
        "peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "tiny": args.tiny,
        "cases": cases,
    }
    out = args.out or RESULTS / f"gpu_check-{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for case in cases:
        mfu = f"{100 * case['mfu']:.1f} %" if case["mfu"] is not None else "?"
        print(
            f"{case['case']:>20} | {case['samples_per_s']:8.1f} samples/s | {case['tokens_per_s']:10.0f} tokens/s "
            f"| {case['model_tflops_per_s']:7.2f} TFLOP/s | MFU {mfu}"
        )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
