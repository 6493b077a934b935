"""Batched Whisper decoding of ≤30 s pieces with faster-whisper's batched machinery.

``BatchedInferencePipeline`` batches the VAD chunks of *one* file; a server wants to
batch pieces of *many* requests. We reuse its pieces (feature extraction, one
``encode`` + one CTranslate2 ``generate`` over the stacked features, timestamp
splitting, word alignment) and keep the per-request parts per piece: each piece is
decoded at offset 0 and aligned on its own slice of the encoder output, so a piece
gives the same answer whatever else shares its batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

from speakerscribe.chunking import speech_intervals
from speakerscribe.errors import InvalidRequestError, ModelFailureError
from speakerscribe.types import SAMPLE_RATE, Segment
from speakerscribe.whisper.options import DecodeOptions, PieceTranscript
from speakerscribe.whisper.packing import WINDOW_S, assemble, plan_windows, unpack
from speakerscribe.whisper.results import (
    LOGPROB_THRESHOLD,
    NO_SPEECH_THRESHOLD,
    slice_batch,
    to_segments,
)
from speakerscribe.whisper.scheduling import CallDuration
from speakerscribe.whisper.segments import (
    cut_repetition_loop,
    drop_reread_words,
    hold_words_to_timestamps,
    is_reread,
    keep_word_order,
    shift_segment,
)

logger = logging.getLogger(__name__)

MAX_PASSES = 4
"""Decoding passes per piece: the first, then up to three continuations of an early stop."""
MIN_TAIL_S = 1.0
"""A shorter tail left after Whisper stopped is not decoded again."""
MIN_TAIL_SPEECH_S = 0.5
"""Speech Silero VAD must hear in a tail that Whisper closed as silent (a lone final
timestamp) for it to be decoded again."""


def _unread_speech(piece: np.ndarray, start: int, end: int) -> bool:
    """Whether ``piece[start:end]``, which Whisper wrote nothing for, is worth decoding
    again: at least ``MIN_TAIL_S`` long, with at least ``MIN_TAIL_SPEECH_S`` VAD hears."""
    if end - start < MIN_TAIL_S * SAMPLE_RATE:
        return False
    heard = speech_intervals(piece[start:end], level_of=piece)
    return sum(b - a for a, b in heard) >= MIN_TAIL_SPEECH_S * SAMPLE_RATE


def _resume_at_unheard_speech(piece: np.ndarray, last_end_s: float) -> int:
    """Where to decode again when Whisper called everything after ``last_end_s`` silence:
    there, if VAD hears speech in that tail, else the piece's end (nothing to decode)."""
    start = int(round(last_end_s * SAMPLE_RATE))
    return start if _unread_speech(piece, start, piece.shape[0]) else piece.shape[0]


def _reads_again(before: list[Segment], segment: Segment) -> bool:
    """The rule where two passes meet: ``True`` when ``segment`` only reads again the
    words that end ``before`` (drop it); otherwise its first words that do are dropped,
    in place."""
    if is_reread(before, segment):
        return True
    drop_reread_words(before, segment)
    return False


@dataclass
class _Window:
    """A stretch of a piece to decode: a tail continues its window's chain of segments;
    a skipped head (``BatchTranscriber._skipped_head``), the only kind with an ``end``,
    starts a chain of its own."""

    piece: int
    begin: int  # first sample
    end: int | None  # end sample, ``None`` for the piece's end
    chain: list[Segment]


def joined_chains(chains: list[list[Segment]]) -> list[Segment]:
    """A piece's segments in order of time, the chains of skipped heads among them; where
    a head meets the text on either side of it, words read twice over the same audio
    are kept once, as where a tail meets its chain (``_reads_again``)."""
    segments = sorted((segment for chain in chains for segment in chain), key=lambda s: s.start)
    for head in chains[1:]:
        if not head:
            continue
        first = _position(segments, head[0])
        if first > 0 and _reads_again(segments[:first], head[0]):
            del segments[first]
            head = head[1:]
            if not head:
                continue
        after = _position(segments, head[-1]) + 1
        if after < len(segments) and all(segments[after] is not own for own in head):
            if _reads_again(head, segments[after]):
                del segments[after]
    return segments


def _position(segments: list[Segment], segment: Segment) -> int:
    return next(i for i, candidate in enumerate(segments) if candidate is segment)


class BatchTranscriber:
    """Decodes lists of pieces in one model call; plain Python, wrapped by the Ray deployment."""

    def __init__(self, model: WhisperModel, pack_short_pieces: bool = False):
        self.model = model
        self.pack_short_pieces = pack_short_pieces
        self.workers = max(1, int(getattr(model.model, "num_workers", 1)))
        self.call_duration = CallDuration(self.workers)
        self._pool = (
            ThreadPoolExecutor(self.workers, "whisper-worker") if self.workers > 1 else None
        )
        self.is_multilingual = bool(model.model.is_multilingual)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """Language of the first 30 s, as faster-whisper decides it for a whole file."""
        if not self.is_multilingual:
            return "en", 1.0
        language, probability, _ = self.model.detect_language(audio=audio[: 30 * SAMPLE_RATE])
        return language, float(probability)

    def transcribe(
        self, pieces: list[np.ndarray], options: DecodeOptions
    ) -> Sequence[PieceTranscript | Exception]:
        """Decode ``pieces`` (each ≤ 30 s, same options) together.

        If the batched call fails, each piece is retried alone so that one bad piece
        fails only its own request: its slot holds the exception.
        """
        if not pieces:
            return []
        try:
            if self.pack_short_pieces and len(pieces) > 1:
                return self._transcribe_packed(pieces, options)
            return self._transcribe_split(pieces, options)
        except Exception:  # isolate the failing piece below
            if len(pieces) == 1:
                logger.exception("Whisper failed on a piece")
                return [ModelFailureError("transcription failed for this audio")]
            results: list[PieceTranscript | Exception] = []
            for piece in pieces:
                results.extend(self.transcribe([piece], options))
            return results

    def _transcribe_packed(
        self, pieces: list[np.ndarray], options: DecodeOptions
    ) -> list[PieceTranscript]:
        """Short pieces share 30 s windows (see ``whisper.packing``); windows batch."""
        windows = plan_windows([piece.shape[0] for piece in pieces])
        if len(windows) == len(pieces):  # nothing shares a window: plain batching
            return self._transcribe_split(pieces, options)
        packed_options = replace(options, word_timestamps=True)  # words carry pieces apart
        decoded = self._transcribe_split([assemble(pieces, w) for w in windows], packed_options)
        results: list[PieceTranscript] = [None] * len(pieces)  # type: ignore[list-item]
        for window, transcript in zip(windows, decoded, strict=True):
            if len(window) == 1:
                results[window[0].index] = transcript
                continue
            for index, segments in unpack(window, transcript.segments).items():
                if not options.word_timestamps:
                    for segment in segments:
                        segment.words = []
                results[index] = PieceTranscript(segments=segments, language=transcript.language)
        # Whisper sometimes skips an utterance after a pause in a packed window; pieces
        # reach us only when VAD heard speech, so an empty one is decoded again alone.
        missed = [i for i, r in enumerate(results) if not r.segments]
        if missed:
            again = self._transcribe_split([pieces[i] for i in missed], options)
            for index, transcript in zip(missed, again, strict=True):
                results[index] = transcript
        return results

    def _transcribe_split(
        self, pieces: list[np.ndarray], options: DecodeOptions
    ) -> list[PieceTranscript]:
        """One share of the batch per CTranslate2 worker, decoded side by side.

        On a CPU the encoder costs the same per piece in any batch, and a decoder step
        is too small to spread well over threads; two calls at once keep the cores
        busier (see ``resolve_workers``). Pieces are dealt out longest first to the
        least loaded share, so the shares end together; a piece weighs at least 5 s,
        since every piece pays for a whole 30 s encoder window. A piece's result does
        not depend on its share.
        """
        if self._pool is None or len(pieces) < 2:
            return list(self._transcribe_batch(pieces, options))
        shares: list[list[int]] = [[] for _ in range(min(self.workers, len(pieces)))]
        loads = [0] * len(shares)
        for index in sorted(range(len(pieces)), key=lambda i: -pieces[i].shape[0]):
            lightest = loads.index(min(loads))
            shares[lightest].append(index)
            loads[lightest] += max(pieces[index].shape[0], 5 * SAMPLE_RATE)

        def decode(share: list[int]) -> list[PieceTranscript]:
            return list(self._transcribe_batch([pieces[i] for i in share], options))

        futures = [self._pool.submit(decode, share) for share in shares]
        results: list[PieceTranscript] = [None] * len(pieces)  # type: ignore[list-item]
        for share, future in zip(shares, futures, strict=True):
            for index, transcript in zip(share, future.result(), strict=True):
                results[index] = transcript
        return results

    def _transcribe_batch(self, pieces: list[np.ndarray], options: DecodeOptions):
        """Decode pieces together; where Whisper stops before a piece's end, go on from there.

        Whisper often closes a 30 s window early ("… <|13.00|><|13.00|>" on a 24 s piece of
        meeting audio) and sequential faster-whisper then seeks to that timestamp and
        decodes again. A single batched pass would drop the rest of the piece, so the
        unfinished tails are decoded again, batched together, up to ``MAX_PASSES`` times.
        A tail's first segment is dropped when it reads again the words that end the text
        before it (``_reread``). Whisper also closes a window with a lone timestamp
        ("the rest is silence") while a speaker is still to come, as on a radio phone-in
        whose last caller starts after a pause; VAD checks such a tail. A window that falls
        into a repetition loop is decoded again from the loop's first copy, and speech
        skipped before a window's first segment is decoded on its own (``_skipped_head``).
        """
        language = options.language or ("en" if not self.is_multilingual else None)
        if language is None:
            raise InvalidRequestError("language must be resolved before decoding", param="language")
        tokenizer = Tokenizer(
            self.model.hf_tokenizer,
            self.is_multilingual,
            task=options.task,
            language=language,
        )
        fw_options = self._fw_options(tokenizer, options)
        found: list[list[list[Segment]]] = [[[]] for _ in pieces]  # per piece, its chains
        active = [_Window(index, 0, None, found[index][0]) for index in range(len(pieces))]
        for _ in range(MAX_PASSES):
            if not active:
                break
            windows = [pieces[w.piece][w.begin : w.end] for w in active]
            decoded = self._decode_windows(windows, tokenizer, fw_options, options)
            still: list[_Window] = []
            for window, (segments, seek_s) in zip(active, decoded, strict=True):
                piece, chain = pieces[window.piece], window.chain
                stop = piece.shape[0] if window.end is None else window.end
                for segment in segments:
                    shift_segment(segment, window.begin / SAMPLE_RATE)
                reread = bool(segments and chain and _reads_again(chain, segments[0]))
                kept = segments[1:] if reread else segments
                chain.extend(kept)
                if window.end is None and kept:  # a head is not searched for a head
                    if head := self._skipped_head(piece, window.begin, kept[0]):
                        found[window.piece].append([])
                        still.append(
                            _Window(window.piece, window.begin, head, found[window.piece][-1])
                        )
                following = window.begin + int(round(seek_s * SAMPLE_RATE))
                if segments and following >= stop:
                    following = _resume_at_unheard_speech(piece[:stop], segments[-1].end)
                left = stop - following
                if segments and following > window.begin and left >= MIN_TAIL_S * SAMPLE_RATE:
                    still.append(replace(window, begin=following))
            active = still
        for chains in found:
            segments = joined_chains(chains)
            keep_word_order(segments)
            for number, segment in enumerate(segments):
                segment.id = number
            yield PieceTranscript(segments=segments, language=language)

    @staticmethod
    def _skipped_head(piece: np.ndarray, begin: int, first: Segment) -> int | None:
        """Where a window's first segment starts, when Whisper skipped speech before it.

        Left free to start late (see ``_generate``), Whisper sometimes opens a window
        with its second utterance, and the first is never written; decoded alone, that
        stretch reads. It is decoded again on the tail's terms (``_unread_speech``);
        ``first`` is the window's first segment, in piece time. Returns the end sample.
        """
        head_end = int(round(first.start * SAMPLE_RATE))
        return head_end if _unread_speech(piece, begin, head_end) else None

    def _decode_windows(
        self,
        windows: list[np.ndarray],
        tokenizer: Tokenizer,
        fw_options: TranscriptionOptions,
        options: DecodeOptions,
    ) -> list[tuple[list[Segment], float]]:
        """One batched pass: each window's segments (window times) and where it stopped (s)."""
        features = np.stack(
            [pad_or_trim(self.model.feature_extractor(window)[..., :-1]) for window in windows]
        )
        encoder_output, outputs = self._generate(features, tokenizer, fw_options)
        frames_per_second = self.model.frames_per_second
        decoded = []
        for index, (window, output) in enumerate(zip(windows, outputs, strict=True)):
            duration = window.shape[0] / SAMPLE_RATE
            segment_size = int(np.ceil(duration) * frames_per_second)
            subsegments, seek, _ = self.model._split_segments_by_timestamps(
                tokenizer=tokenizer,
                tokens=output["tokens"],
                time_offset=0.0,
                segment_size=segment_size,
                segment_duration=duration,
                seek=0,
            )
            raw = [
                dict(
                    text=tokenizer.decode(sub["tokens"]),
                    tokens=sub["tokens"],
                    start=sub["start"],
                    end=sub["end"],
                    seek=0,
                )
                for sub in subsegments
                if sub["tokens"]
            ]
            raw, loop_at = cut_repetition_loop(raw, fw_options.compression_ratio_threshold)
            if options.word_timestamps and raw:
                spans = [(item["start"], item["end"]) for item in raw]
                self.model.add_word_timestamps(
                    [raw],
                    tokenizer,
                    slice_batch(encoder_output, index),
                    [segment_size],
                    fw_options.prepend_punctuations,
                    fw_options.append_punctuations,
                    0.0,
                )
                for item, (start, end) in zip(raw, spans, strict=True):
                    hold_words_to_timestamps(item, start, end)
            segments = to_segments(raw, output, options, duration)
            if options.logprobs and segments:
                self._add_logprobs(
                    segments, tokenizer, slice_batch(encoder_output, index), segment_size
                )
            stopped_at = seek / frames_per_second if loop_at is None else loop_at
            decoded.append((segments, stopped_at))
        return decoded

    def _generate(
        self, features: np.ndarray, tokenizer: Tokenizer, fw_options: TranscriptionOptions
    ) -> tuple[ctranslate2.StorageView, list[dict]]:
        """``BatchedInferencePipeline.generate_segment_batched``, passing ``max_initial_timestamp``.

        That one leaves CTranslate2's default, Whisper's rule that the first timestamp
        falls within 1 s: right for windows that start at speech (its VAD chunks), not
        for our pieces, which start in a pause (the first at 0 s). Forced to start there,
        beam search on sample.wav (speech from 6.7 s) settles on a text in lower case
        without punctuation; left free, it writes sentences.
        """
        prompt = self.model.get_prompt(
            tokenizer,
            previous_tokens=(
                tokenizer.encode(fw_options.initial_prompt) if fw_options.initial_prompt else []
            ),
            without_timestamps=fw_options.without_timestamps,
        )
        encoder_output = self.model.encode(features)
        results = self.model.model.generate(
            encoder_output,
            [list(prompt) for _ in range(features.shape[0])],
            beam_size=fw_options.beam_size,
            patience=fw_options.patience,
            length_penalty=fw_options.length_penalty,
            max_length=self.model.max_length,
            suppress_blank=fw_options.suppress_blank,
            suppress_tokens=fw_options.suppress_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            sampling_temperature=fw_options.temperatures[0],
            repetition_penalty=fw_options.repetition_penalty,
            no_repeat_ngram_size=fw_options.no_repeat_ngram_size,
            max_initial_timestamp_index=int(
                round(fw_options.max_initial_timestamp / self.model.time_precision)
            ),
        )
        outputs = []
        for result in results:
            length = len(result.sequences_ids[0])
            cumulative = result.scores[0] * length**fw_options.length_penalty
            outputs.append(
                dict(
                    avg_logprob=cumulative / (length + 1),
                    no_speech_prob=result.no_speech_prob,
                    tokens=result.sequences_ids[0],
                )
            )
        return encoder_output, outputs

    def _add_logprobs(
        self,
        segments: list[Segment],
        tokenizer: Tokenizer,
        encoder_output: ctranslate2.StorageView,
        num_frames: int,
    ) -> None:
        """Each text token's log probability given the audio and the tokens before it.

        One teacher-forced decoder pass (CTranslate2's ``align``, which word timestamps
        use too) over the piece's final text, so the figures are those of the tokens
        returned, whatever beam search explored on the way.
        """
        per_segment = [[t for t in s.tokens if t < tokenizer.eot] for s in segments]
        text_tokens = [t for tokens in per_segment for t in tokens]
        if not text_tokens:
            for segment in segments:
                segment.logprobs = []
            return
        (alignment,) = self.model.model.align(
            encoder_output, tokenizer.sot_sequence, [text_tokens], [num_frames]
        )
        probabilities = iter(alignment.text_token_probs)
        for segment, tokens in zip(segments, per_segment, strict=True):
            segment.logprobs = [
                (tokenizer.decode([token]), math.log(max(next(probabilities), 1e-12)))
                for token in tokens
            ]

    def _fw_options(self, tokenizer: Tokenizer, options: DecodeOptions) -> TranscriptionOptions:
        return TranscriptionOptions(
            beam_size=options.beam_size,
            best_of=5,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            log_prob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            compression_ratio_threshold=2.4,
            condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5,
            temperatures=[options.temperature],
            initial_prompt=options.prompt or None,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=False,
            max_initial_timestamp=WINDOW_S,  # a piece's speech may start late: see _generate
            word_timestamps=options.word_timestamps,
            prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False,
            max_new_tokens=None,
            clip_timestamps="0",
            hallucination_silence_threshold=None,
            hotwords=None,
        )
