"""Every row schema passed between stages, written once.

=============================  ===================  ==============================  ===========================
file (under the run directory)  schema              written by                      read by
=============================  ===================  ==============================  ===========================
corpus/{train,val,test}.parquet  CORPUS             data/corpus.py                  teacher/requests.py, student
corpus/rejects.parquet           CORPUS_REJECTS     data/corpus.py                  the user, summary.json
corpus/seen_in_train.parquet     SEEN_IN_TRAIN      data/corpus.py                  evaluate, report, export
teacher/requests/                REQUESTS           teacher/requests.py             teacher/pipeline.py (stream)
(the stream, backend -> parser)  PASSTHROUGH + ...  teacher/backends.py             teacher/pipeline.py
teacher/generations/             SAMPLES            teacher/pipeline.py (parse)     teacher/pipeline.py (select)
teacher/distill.parquet          DISTILL            teacher/pipeline.py (select)    student/ (tokenized, launcher)
teacher/rejects.parquet          TEACHER_REJECTS    teacher/pipeline.py (select)    the user, report
teacher/heldout.parquet          HELDOUT            teacher/pipeline.py (select)    student/tokenized.py (cot)
student/tokenized/<format>/      TOKENIZED          student/tokenized.py            every training of the run
=============================  ===================  ==============================  ===========================

Every text column is a string (an empty string, not null, for "none"); ids are the corpus's row ids.
"""

from __future__ import annotations

import pyarrow as pa

_TEXT = pa.string()
_TOKENS = pa.list_(pa.int32())


def _strings(*names: str) -> list[tuple[str, pa.DataType]]:
    return [(name, _TEXT) for name in names]


CORPUS = pa.schema(_strings("id", "question", "gold"))
CORPUS_REJECTS = pa.schema(_strings("id", "split", "reason", "detail"))
# The validation and test rows whose input a train row has too (case and spacing aside).
SEEN_IN_TRAIN = pa.schema(_strings("split", "id"))

# A replay file's usable rows ("" where the file gives no such text).
REPLAY = pa.schema(_strings("id", "completion", "rationale", "label"))

# What a request carries from the replay file for its row (the replay backend; ``replayed``: the file has one).
REPLAYED = pa.schema([*_strings("replay_completion", "replay_rationale", "replay_label"), ("replayed", pa.bool_())])
# A prompt per row and sample; ``reason`` is set on a request that is never sent (its prompt is too long).
REQUESTS = pa.schema(
    [
        *_strings("request_id", "id", "split"),
        ("sample", pa.int64()),
        ("seed", pa.int64()),
        ("question", _TEXT),
        ("question_key", pa.int64()),  # a hash of the normalized input: repeated inputs share it
        *_strings("gold", "prompt", "reason", "detail"),
        *REPLAYED,
    ]
)
# The request columns every backend hands on beside its completion.
PASSTHROUGH = ["request_id", "id", "split", "sample", "question", "question_key", "gold"]

# One parsed completion per request (unsent requests join them as unparsed samples).
SAMPLES = pa.schema(
    [
        *[REQUESTS.field(name) for name in PASSTHROUGH],
        ("completion", _TEXT),
        ("generated_tokens", pa.int64()),
        ("prompt_tokens", pa.int64()),  # what the teacher read; 0 when unknown (replay, runs from before it was kept)
        *_strings("rationale", "teacher_label"),
        ("teacher_correct", pa.bool_()),
        *_strings("reason", "detail"),
    ]
)

# The teacher stage's outputs: the kept train rows, the dropped ones, and its answers on val and test.
DISTILL = pa.schema(
    [
        *_strings("id", "question", "gold", "rationale", "teacher_label"),
        ("teacher_correct", pa.bool_()),
        ("vote_share", pa.float64()),
        ("samples", pa.int64()),
    ]
)
TEACHER_REJECTS = pa.schema(_strings("id", "reason", "detail", "completion"))
HELDOUT = pa.schema(
    [
        *_strings("id", "split", "gold", "rationale", "teacher_label"),
        ("teacher_correct", pa.bool_()),
        *_strings("reason", "detail"),
    ]
)

# A training example as token ids: the label objective's and the rationale objective's prompt (a seq2seq
# student's encoder input) and target, and how many target tokens are given (a marker the loss does not score).
TOKENIZED = pa.schema(
    [
        ("id", _TEXT),
        ("label_prompt", _TOKENS),
        ("label_target", _TOKENS),
        ("label_given", pa.int32()),
        ("rationale_prompt", _TOKENS),
        ("rationale_target", _TOKENS),
        ("rationale_given", pa.int32()),
    ]
)
