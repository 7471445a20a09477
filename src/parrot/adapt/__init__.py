"""Adapters that change a finished model from outside: quantization, LoRA, soft prompts."""
