"""Answering: modes, prompts, the local GGUF and its adapters, follow-ups, model servers."""
