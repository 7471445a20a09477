"""Adapters that change a finished model from outside: quantization (LoRA and soft prompts to come)."""
