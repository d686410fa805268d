"""Quire's engine: ingestion, storage, retrieval, prompting and generation. No Qt."""

import os

# fastembed and huggingface-hub try the network unless this is set; the app stays
# offline except for an explicit download (models.hub), which lifts it for that call.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# onnxruntime (under fastembed) sends telemetry unless told not to: it keeps an event
# queue and device id under ~/.cache/Microsoft/ and looked up mobile.events.data.microsoft.com
# during ingest and ask. Read once, when onnxruntime loads: set before any import of it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
