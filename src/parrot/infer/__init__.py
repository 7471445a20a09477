"""Inference: the generation engine, sampling, stop conditions and streaming text."""

from parrot.infer.engine import Engine, TextStream
from parrot.infer.requests import Completion, RequestStats, StepOutput
from parrot.infer.sampling import SamplingParams

__all__ = ["Completion", "Engine", "RequestStats", "SamplingParams", "StepOutput", "TextStream"]
