"""Run one training job (pretraining or LoRA fine-tuning) the way the FSDP tests need it:
`python fsdp_driver.py SPEC_JSON`, alone or under torchrun. SPEC: kind ("pretrain" or
"lora"), out, data, base (lora), overrides, resume, crash_at (the main rank exits hard
right after the checkpoint of that step, as a crashed machine would)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from parrot.training.finetune import FinetuneConfig, finetune
from parrot.training.loop import Hook
from parrot.training.runner import train


class CrashAfterCheckpoint(Hook):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_checkpoint(self, run_dir: Path) -> None:
        rows = (run_dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(rows[-1])["step"] >= self.step:
            os._exit(17)


def main(spec: dict) -> None:
    hooks = [CrashAfterCheckpoint(spec["crash_at"])] if spec.get("crash_at") else []
    overrides = spec.get("overrides", [])
    resume = spec.get("resume", False)
    if spec["kind"] == "pretrain":
        train("tiny", spec["out"], data=[spec["data"]], overrides=[] if resume else overrides,
              resume=resume, hooks=hooks, show_progress=False)
    else:
        finetune(spec["base"], spec["data"], spec["out"], FinetuneConfig(method="lora", rank=4),
                 [] if resume else overrides, resume, hooks, show_progress=False)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
