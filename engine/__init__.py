"""Quire's engine: ingestion, storage, retrieval, prompting and generation. No Qt."""
