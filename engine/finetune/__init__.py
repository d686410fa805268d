"""Fine-tuning: training examples, the LoRA trainer on the GGUF, and a run to an installed
adapter."""
