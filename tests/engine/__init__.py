"""Tests of engine/: ingest, index, answers, reader, fine-tuning, evaluation."""
