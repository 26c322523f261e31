"""The student's tokenizer.

A student built from config (no pretrained weights) gets a byte-level BPE
tokenizer trained on the run's own texts, so nothing is downloaded. Digits
are split one by one, which makes numbers easier to learn for a small model.
A pretrained student uses its own tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from raydsbs.config import StudentConfig
from raydsbs.staging import written_whole
from raydsbs.storage import Location, local_copy

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
# Train rows whose texts (and as many teacher rationales) the run's tokenizer learns from: its vocabulary
# settles long before this, and the corpus can be millions of rows.
TOKENIZER_SAMPLE_ROWS = 100_000


def train_tokenizer(texts: Iterable[str], vocab_size: int, target: Location):
    """Train a byte-level BPE tokenizer on ``texts`` and save it (atomically) to ``target``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(texts, trainer)
    eos_id = core.token_to_id(EOS)
    # T5 convention: every sequence ends with </s>.
    core.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos_id)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    with written_whole(target) as staging:  # if another trial saved the same tokenizer first, it stays
        tokenizer.save_pretrained(staging)
    return tokenizer


def load_tokenizer(config: StudentConfig, trained_dir: Location):
    """The pretrained student's tokenizer, or the one trained for this run."""
    from transformers import AutoTokenizer

    from raydsbs.student.model import pretrained_source
    from raydsbs.teacher.model_cache import resolve_model

    source = pretrained_source(config)
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model(source) if source else str(local_copy(trained_dir)), trust_remote_code=config.trust_remote_code
    )
    if tokenizer.pad_token is None:  # many causal tokenizers have none; padding is never scored
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
