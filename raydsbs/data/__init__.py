"""Readers of corpora and of teacher outputs released by others."""
