"""parrot's Python API: load a model and use it, or train one. Every CLI command calls this.

    import parrot
    llm = parrot.load("smollm2-135m-instruct")     # any MODEL: pulled name, GGUF, HF folder,
                                                   # run directory, LoRA run
    llm.generate("The capital of France is", max_new_tokens=20, temperature=0).text
    for piece in llm.stream("Tell me a story"): print(piece, end="")
    llm.chat([{"role": "user", "content": "Hi!"}]).text
    llm.generate_batch(["a", "b", "c"], temperature=0.8, seed=1)
    parrot.load("minilm-l6").embed(["A cat.", "A feline."])
    parrot.train(preset="tiny", out="runs/tiny", steps=100)

Keyword sampling options are the fields of `parrot.infer.SamplingParams` (temperature,
top_k, top_p, min_p, penalties, seed, max_new_tokens, stop). This module (with `cli`) is
the only place that reads the environment: `PARROT_HOME` (where pulled models and built
kernels live) and `PARROT_NATIVE=0` (PyTorch's kernels only).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from parrot.errors import ParrotError
from parrot.hub.registry import DEFAULT_MODEL
from parrot.infer.engine import DEFAULT_MAX_LEN
from parrot.infer.vision import with_images


def home() -> Path:
    """Where pulled models and built kernels live: `$PARROT_HOME`, else ~/.cache/parrot."""
    from parrot.utils.home import home_from

    return home_from(os.environ)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class LLM:
    """A loaded model with its tokenizer, chat template and (for decoders) an engine.

    `num_parameters` is the true count, taken before weights are packed for inference.
    `calibration_temperature` is the T that `parrot eval calibration --fit-temperature`
    saved beside the model (None without one); sampling with `calibrated=True` samples
    from softmax(logits / T) at the requested temperature, i.e. at temperature * T.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, info: Any, *,
                 engine: Any = None, template: Any = None, num_parameters: int = 0,
                 calibration_temperature: float | None = None) -> None:
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.template, self.num_parameters = template, num_parameters
        self.calibration_temperature = calibration_temperature
        self._engine = engine

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def engine(self) -> Any:
        """The generation engine (`parrot.infer.Engine`); a ParrotError for an encoder."""
        if self._engine is None:
            raise ParrotError(f"{self.info.name} is an encoder-only model: it embeds texts "
                              "and fills masks but does not generate; load a decoder.")
        return self._engine

    # ---- generation ---------------------------------------------------------------

    def generate(self, prompt: str | Sequence[int], *, truncate: bool = False,
                 images: Sequence[Any] | None = None, json_schema: Any = None,
                 **sampling: Any) -> Any:
        """One completion (`parrot.infer.Completion`: .text, .token_ids, .finish_reason).

        `images` (paths, data URLs, bytes, PIL images) go with a vision-language model's
        prompt, one per `<image>` in it (placed in front when the text has none).
        `json_schema` constrains the output to JSON matching it (`{"type": "object"}`: any
        object); the text then always parses."""
        return self.engine.generate(with_images(prompt, images), self.sampling(**sampling),
                                    truncate=truncate, json_schema=json_schema)

    def stream(self, prompt: str | Sequence[int], *, truncate: bool = False,
               images: Sequence[Any] | None = None, json_schema: Any = None,
               **sampling: Any) -> Any:
        """An iterator of text pieces; its `.completion` is set once it is exhausted."""
        return self.engine.stream(with_images(prompt, images), self.sampling(**sampling),
                                  truncate=truncate, json_schema=json_schema)

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], *, json_schema: Any = None,
                       **sampling: Any) -> list:
        """Completions of several prompts decoded together (continuous batching), in order."""
        return self.engine.generate_batch(list(prompts), self.sampling(**sampling),
                                          json_schema=json_schema)

    def chat(self, messages: Sequence[dict[str, Any]], *, json_schema: Any = None,
             **sampling: Any) -> Any:
        """The assistant's reply to OpenAI-style messages, rendered with the model's template."""
        return self.engine.generate(self.chat_prompt(messages), self._chat_params(sampling),
                                    json_schema=json_schema)

    def stream_chat(self, messages: Sequence[dict[str, Any]], *, json_schema: Any = None,
                    **sampling: Any) -> Any:
        """`chat`, as an iterator of text pieces."""
        return self.engine.stream(self.chat_prompt(messages), self._chat_params(sampling),
                                  json_schema=json_schema)

    def chat_prompt(self, messages: Sequence[dict[str, Any]]) -> Any:
        """The text the model continues for `messages` (generation prompt added); with
        image_url content parts, an `ImagePrompt` of that text and the images."""
        from parrot.chat import render, special_tokens_text
        from parrot.infer.vision import ImagePrompt, split_images

        messages, images = split_images(messages)
        text = render(messages, self.template, add_generation_prompt=True,
                      **special_tokens_text(self.tokenizer))
        return ImagePrompt(text, images) if images else text

    def session(self, system: str | None = None, note: Callable[[str], None] | None = None,
                **sampling: Any) -> Any:
        """A multi-turn `ChatSession` (what `parrot chat` runs)."""
        from parrot.infer.chat_session import ChatSession

        return ChatSession(self.engine, self.template, self.sampling(**sampling), system, note)

    # ---- encoders -----------------------------------------------------------------

    def embed(self, texts: str | Sequence[str], *, pooling: str | None = None,
              normalize: bool = True) -> torch.Tensor:
        """Sentence embeddings (len(texts), d_model), float32; L2-normalized by default."""
        from parrot.infer.embed import embed_texts

        extra = getattr(self.info, "extra", {}) or {}
        return embed_texts(self.model, self.tokenizer, texts,
                           pooling=pooling or extra.get("pooling", "mean"),
                           max_length=extra.get("max_seq_length"), normalize=normalize)

    def fill_mask(self, text: str, top_k: int = 5) -> list:
        """The top-k candidates (token, probability, sequence) for each mask in `text`."""
        from parrot.infer.fill_mask import check_fill_mask_model, fill_mask, mask_name

        if top_k < 1:
            raise ParrotError(f"top_k must be at least 1, got {top_k}.")
        check_fill_mask_model(self.model)
        name = mask_name(self.tokenizer)
        if name not in text:
            raise ParrotError(f"The text has no {name}; write {name} where the model should "
                              f"fill in a word, e.g. \"The capital of France is {name}.\"")
        return fill_mask(self.model, self.tokenizer, text, top_k)

    # ---- tokens -------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, special tokens allowed (BOS added where the model wants it)."""
        if self._engine is not None:
            return self._engine.encode(text)
        return self.tokenizer.encode(text, allowed_special="all")

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def sampling(self, calibrated: bool = False, **sampling: Any) -> Any:
        """SamplingParams from keyword options; `calibrated` multiplies the temperature by
        the saved calibration temperature (a ParrotError when none was fitted)."""
        params = _params(sampling)
        if not calibrated:
            return params
        if self.calibration_temperature is None:
            raise ParrotError(f"{self.info.name} has no fitted temperature; run `parrot eval "
                              f"calibration MODEL --data TEXT --fit-temperature` first.")
        return params.replace(temperature=params.temperature * self.calibration_temperature)

    def _chat_params(self, sampling: dict[str, Any]) -> Any:
        params = self.sampling(**sampling)
        return params.replace(stop=tuple(params.stop) + self.template.stop)


def _params(sampling: dict[str, Any]) -> Any:
    """SamplingParams from keyword options (an unknown one is a ParrotError)."""
    from parrot.infer import SamplingParams

    known = {f.name for f in dataclasses.fields(SamplingParams)}
    unknown = sorted(set(sampling) - known)
    if unknown:
        raise ParrotError(f"Unknown sampling option {unknown[0]!r}; use "
                          f"{', '.join(sorted(known))}.")
    return SamplingParams(**sampling)


def load(model: str | Path = DEFAULT_MODEL, *, device: str = "cpu", quantize: str = "auto",
         max_batch: int = 8, max_len: int | None = DEFAULT_MAX_LEN, compile: bool = False,
         template: str | None = None, pull: bool = True,
         log: Callable[[str], None] | None = _stderr) -> LLM:
    """Load MODEL: a pulled or pullable name (pulled on first use when `pull`), a GGUF
    file, a Hugging Face folder, a parrot run directory or a LoRA / soft-prompt run.

    A decoder gets an engine with `max_batch` cache slots of `max_len` positions (capped
    at the model's context) and weights prepared by `quantize` ("auto", "none", "int8",
    "int4"); `compile` compiles its decode step. An encoder is left as loaded.
    """
    from parrot.adapt.prepare import QUANTIZE_MODES

    if quantize not in QUANTIZE_MODES:
        raise ParrotError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got "
                          f"{quantize!r}.")
    if max_batch < 1:
        raise ParrotError(f"max_batch must be at least 1, got {max_batch}.")
    if template is not None:
        from parrot.chat import get_template

        get_template(template)  # an unknown template fails before the model loads
    from parrot.chat import template_for
    from parrot.infer.encoder import is_encoder_only

    net, tokenizer, info = load_model(model, device, pull=pull, log=log)
    if not hasattr(net.config, "causal"):  # not a transformer: the lesson's GRU models
        raise ParrotError(f"{model} is a GRU encoder-decoder from `parrot lesson rnn`; it has "
                          "no engine to generate with; load a transformer.")
    count = net.num_parameters() if hasattr(net, "num_parameters") else \
        sum(p.numel() for p in net.parameters())  # a soft-prompt run wraps its base
    if is_encoder_only(net.config):
        return LLM(net, tokenizer, info, num_parameters=count)
    from parrot.eval.calibration import read_temperature

    where = Path(model) if Path(model).exists() else info.path
    return LLM(net, tokenizer, info, num_parameters=count,
               calibration_temperature=read_temperature(where),
               template=template_for(tokenizer, template),
               engine=_build_engine(net, tokenizer, info, quantize, max_batch, max_len, compile))


def load_model(model: str | Path, device: str = "cpu", *, pull: bool = True,
               log: Callable[[str], None] | None = _stderr) -> tuple[Any, Any, Any]:
    """(model in eval mode, tokenizer, info) for MODEL, unprepared: the one loader's answer."""
    from parrot.hub.resolve import resolve_model

    return resolve_model(model, device, home=home(), pull_missing=pull, log=log)


def load_tokenizer(model: str | Path) -> Any:
    """The tokenizer of MODEL, or of a tokenizer.json file or a folder holding only one."""
    from parrot.tokenizer import Tokenizer

    path = Path(model)
    if path.is_file() and path.suffix == ".json":
        return Tokenizer.load(path)
    if path.is_dir() and (path / "tokenizer.json").is_file() and \
            not (path / "config.json").is_file():
        return Tokenizer.load(path)
    return load_model(model)[1]


def _build_engine(model: torch.nn.Module, tokenizer: Any, info: Any, quantize: str,
                  max_batch: int, max_len: int | None, compile: bool) -> Any:
    from parrot.adapt.prepare import prepare_for_inference
    from parrot.infer import Engine
    from parrot.kernels import settings_from

    # PARROT_NATIVE=0 (PyTorch's kernels only), PARROT_HOME (where kernels are built), CC.
    model = prepare_for_inference(model, quantize, info.quantization, **settings_from(os.environ))
    length = model.config.context_length if max_len is None else \
        min(model.config.context_length, max_len)
    return Engine(model, tokenizer, max_batch=max_batch, max_len=length,
                  eos_ids=info.eos_ids or None, compile=compile)


# ---- training: the functions `parrot train`, `finetune`, `distill`, `seq2seq train`,
# `reward train` and `align dpo` call

def settings_to_overrides(settings: dict[str, Any], overrides: Sequence[str] = ()) -> list[str]:
    """Keyword settings as `--set` strings: steps=100 → "steps=100" (the section is found
    from the field name; write "train.lr" style names in `overrides` where it is ambiguous)."""
    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [*overrides, *(f"{key}={text(value)}" for key, value in settings.items())]


def train(preset: str = "tiny", out: str | Path = "runs/tiny", *,
          data: Sequence[str | Path] | None = None, resume: bool = False,
          overrides: Sequence[str] = (), text_field: str = "text",
          tokenizer: str | Path | None = None, hooks: Sequence[Any] = (),
          show_progress: bool = True, **settings: Any) -> Any:
    """Pretrain `preset` into run directory `out`; keyword settings are fields of the
    model, training or data config (`steps=100`, `lr=3e-3`, `d_model=128`). Returns a
    `TrainResult`. `hooks` run inside the loop (the CLI adds `viz.report.RunPictures()`)."""
    from parrot.training.runner import train as run

    return run(preset, out, data=data, overrides=settings_to_overrides(settings, overrides),
               resume=resume, text_field=text_field, tokenizer=tokenizer, hooks=hooks,
               show_progress=show_progress)


def finetune(model: str | Path, data: str | Path, out: str | Path, *, method: str = "lora",
             resume: bool = False, overrides: Sequence[str] = (), hooks: Sequence[Any] = (),
             show_progress: bool = True, **settings: Any) -> Any:
    """Fine-tune MODEL on the conversations in `data` (JSONL) into `out`. Keyword settings
    are fields of `FinetuneConfig` (rank, alpha, targets, prompt_tokens, quantize, ...) or
    of the training config (steps, lr, batch_size, ...)."""
    from parrot.training.finetune import FinetuneConfig
    from parrot.training.finetune import finetune as run

    method_settings, train_settings = _split(settings, FinetuneConfig)
    return run(model, data, out, FinetuneConfig(method=method, **method_settings),
               settings_to_overrides(train_settings, overrides), resume, hooks,
               show_progress=show_progress, home=home())


def distill(teacher: str | Path, student: str | Path, out: str | Path, *,
            data: Sequence[str | Path] | None = None, resume: bool = False,
            teacher_cache: str | Path | None = None, overrides: Sequence[str] = (),
            hooks: Sequence[Any] = (), show_progress: bool = True, **settings: Any) -> Any:
    """Train `student` (a model preset or a run directory) on `teacher`'s soft targets.
    Keyword settings are fields of `DistillConfig` (temperature, alpha, top_k) or of the
    training (and, for a preset student, model) config."""
    from parrot.training.distill import DistillConfig
    from parrot.training.distill import distill as run

    method_settings, train_settings = _split(settings, DistillConfig)
    return run(teacher, str(student), out, data=data, cfg=DistillConfig(**method_settings),
               overrides=settings_to_overrides(train_settings, overrides), resume=resume,
               teacher_cache=teacher_cache, hooks=hooks, show_progress=show_progress,
               home=home())


def seq2seq_train(data: str | Path, out: str | Path, *, preset: str = "seq2seq-tiny",
                  source_field: str = "source", target_field: str = "target",
                  resume: bool = False, overrides: Sequence[str] = (),
                  hooks: Sequence[Any] = (), show_progress: bool = True,
                  **settings: Any) -> Any:
    """Train an encoder-decoder on supervised (source, target) pairs from JSONL."""
    from parrot.training.seq2seq import train_pairs

    return train_pairs(preset, out, data, source_field, target_field,
                       settings_to_overrides(settings, overrides), resume, hooks,
                       show_progress=show_progress)


def reward_train(model: str | Path, data: str | Path, out: str | Path, *, method: str = "lora",
                 resume: bool = False, overrides: Sequence[str] = (), hooks: Sequence[Any] = (),
                 show_progress: bool = True, **settings: Any) -> Any:
    """Train a reward model (MODEL + a scalar head on the last token, Bradley–Terry loss)
    on the ranked pairs in `data` into `out`; settings as for `finetune`."""
    from parrot.training.finetune import FinetuneConfig
    from parrot.training.reward import train_reward

    own, rest = _split(settings, FinetuneConfig)
    return train_reward(model, data, out, FinetuneConfig(method=method, **own),
                        settings_to_overrides(rest, overrides), resume, hooks,
                        show_progress=show_progress, home=home())


def reward_score(run_dir: str | Path, data: str | Path) -> Any:
    """Rewards of a reward run on the pairs in `data`: `.rewards` (N, 2) (chosen,
    rejected) and `.accuracy` (the share of pairs where chosen scores above rejected)."""
    from parrot.training.reward import score_file

    return score_file(run_dir, data, home())


def dpo(model: str | Path, data: str | Path, out: str | Path, *, beta: float = 0.1,
        loss: str = "sigmoid", label_smoothing: float = 0.0, method: str = "lora",
        reference: str | Path | None = None, ref_cache: str | Path | None = None,
        resume: bool = False, overrides: Sequence[str] = (), hooks: Sequence[Any] = (),
        show_progress: bool = True, **settings: Any) -> Any:
    """DPO of MODEL on the ranked pairs in `data` into `out`, against `reference`
    (default MODEL itself, its log-probs cached in `ref_cache`, default RUN/ref_cache)."""
    from parrot.training.dpo import dpo as run
    from parrot.training.finetune import FinetuneConfig
    from parrot.training.objectives_pref import DPOConfig

    own, rest = _split(settings, FinetuneConfig)
    return run(model, data, out, FinetuneConfig(method=method, **own),
               DPOConfig(beta, loss, label_smoothing), reference, ref_cache,
               settings_to_overrides(rest, overrides), resume, hooks,
               show_progress=show_progress, home=home())


def merge(run_dir: str | Path, out: str | Path) -> Path:
    """Fold a LoRA run's adapter into its base and write a plain run directory."""
    from parrot.training.finetune import merge_run

    return merge_run(run_dir, out, home())


def _split(settings: dict[str, Any], config_class: type) -> tuple[dict, dict]:
    """(the settings that are fields of `config_class`, the rest)."""
    own = {f.name for f in dataclasses.fields(config_class)}
    return ({k: v for k, v in settings.items() if k in own},
            {k: v for k, v in settings.items() if k not in own})

