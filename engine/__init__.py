"""Quire's engine: ingestion, storage, retrieval, prompting and generation. No Qt."""

import os

# fastembed and huggingface-hub try the network unless this is set; the app stays
# offline except for an explicit download (models.hub), which lifts it for that call.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
