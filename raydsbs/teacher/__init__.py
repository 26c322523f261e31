"""The teacher stage: few-shot chain-of-thought prompts -> an LLM -> (rationale, label) per row."""
