"""Greedy outputs of a trained student for either task, written the way it was trained (see batching.py)."""

from __future__ import annotations

import torch

from raydsbs.student.batching import StudentFormat, pad_rows, token_ids


def until_eos(ids: list[int], eos_id: int) -> list[int]:
    """Generated ids up to the first EOS."""
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


def _strip(rows: torch.Tensor, given: int, eos_id: int) -> list[list[int]]:
    """Generated ids after the ``given`` leading ones, up to the first EOS."""
    return [until_eos(row[given:], eos_id) for row in rows.tolist()]


def prompt_ids(tokenizer, fmt: StudentFormat, questions: list[str], task: str) -> list[list[int]]:
    """The token ids the student reads for ``task`` on each question, as in training: the prompt, and for a
    causal student the output marker after it (a seq2seq student's marker starts its decoder instead)."""
    seq2seq = fmt.kind == "seq2seq"
    sources = token_ids(tokenizer, [fmt.prompt(task, q) for q in questions], fmt.max_input_tokens, special=seq2seq)
    if not seq2seq:
        marker = fmt.marker_ids(tokenizer, task)
        sources = [source + marker for source in sources]
    return sources


def predict(
    model, tokenizer, fmt: StudentFormat, questions: list[str], task: str, max_new_tokens: int, batch_size: int = 32
) -> list[str]:
    """The decoded ``task`` ("label" or "rationale") outputs for ``questions``, in order."""
    return [text for text, _ in predict_counted(model, tokenizer, fmt, questions, task, max_new_tokens, batch_size)]


def predict_counted(
    model,
    tokenizer,
    fmt: StudentFormat,
    questions: list[str],
    task: str,
    max_new_tokens: int,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float32,
) -> list[tuple[str, int]]:
    """(decoded output, tokens generated up to its end) of ``task`` for each of ``questions``, in order;
    ``dtype`` bf16 or fp16 computes under autocast (the precision the student trained in)."""
    outputs = []
    model.eval()
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    seq2seq = fmt.kind == "seq2seq"
    for start in range(0, len(questions), batch_size):
        sources = prompt_ids(tokenizer, fmt, questions[start : start + batch_size], task)
        if seq2seq:
            input_ids = pad_rows(sources, pad)
            attention_mask = (input_ids != pad).long()
            first = torch.tensor(
                [[model.config.decoder_start_token_id] + fmt.marker_ids(tokenizer, task)] * len(sources)
            )
            kwargs = {"decoder_input_ids": first}
            given = first.shape[1]
        else:  # left-padded prompts: every continuation starts at the same column
            width = max(len(s) for s in sources)
            input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sources])
            attention_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sources])
            kwargs, given = {}, width
        device = model.device  # a GPU's, when the student was put on one
        kwargs = {name: value.to(device) for name, value in kwargs.items()}
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
                **kwargs,
            )
        answers = _strip(generated.cpu(), given, eos)
        texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
        outputs += [(text.strip(), min(len(ids) + 1, max_new_tokens)) for text, ids in zip(texts, answers, strict=True)]
    return outputs
