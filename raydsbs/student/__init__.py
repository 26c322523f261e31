"""The student stage: a small model trained on labels and rationales with Ray Train."""
