"""Quire's reader: a small cross-encoder that reranks sources and quotes the answer, and
its training."""
