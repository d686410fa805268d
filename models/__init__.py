"""Model files: bundled defaults, the local registry, Hub downloads and LoRA conversion. No Qt."""
