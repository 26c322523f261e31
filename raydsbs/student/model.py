"""Building the student model: a T5 from a size preset, or any pretrained seq2seq model."""

from __future__ import annotations

from raydsbs.config import StudentConfig

# Sizes of T5 students that train from scratch on a CPU; the paper's students
# (T5-base 220M, T5-large 770M, T5-XXL 11B) are pretrained hub models
# (student.pretrained=google/t5-v1_1-base, ...).
PRESETS: dict[str, dict[str, int]] = {
    "t5-tiny": {"d_model": 128, "d_ff": 512, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_kv": 32},
    "t5-mini": {"d_model": 256, "d_ff": 1024, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 4, "d_kv": 64},
    "t5-small": {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_decoder_layers": 6, "num_heads": 8, "d_kv": 64},
}


def build_student(config: StudentConfig, tokenizer):
    """A fresh T5 of ``config.preset`` sized to ``tokenizer``, or ``config.pretrained`` loaded."""
    from transformers import AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

    if config.pretrained:
        return AutoModelForSeq2SeqLM.from_pretrained(config.pretrained)
    t5_config = T5Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        feed_forward_proj="gated-gelu",  # as T5 v1.1, the paper's students
        # Tied input/output embeddings scale the logits by d_model^-0.5; an untied
        # head initialised from scratch starts with losses near 60 and trains slower.
        tie_word_embeddings=True,
        dropout_rate=0.1,
        **PRESETS[config.preset],
    )
    return T5ForConditionalGeneration(t5_config)
