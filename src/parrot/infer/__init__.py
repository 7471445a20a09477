"""Inference: the generation engine, sampling, stop conditions and streaming text."""

from parrot.infer.engine import Engine
from parrot.infer.requests import Completion, RequestStats, StepOutput
from parrot.infer.sampling import SamplingParams
from parrot.infer.streaming import TextStream

__all__ = ["Completion", "Engine", "RequestStats", "SamplingParams", "StepOutput", "TextStream"]
