"""Evaluation: question files, per-question checks and metrics, and the user's own test set."""
