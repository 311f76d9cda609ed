"""SpeechLM: a composable speech LLM that never truncates long audio.

The data flows one way::

    waveform -> log-mel per 30 s window -> Whisper encoder per window -> frames with time spans
      -> encoder_pool -> encoder-space presses -> projector -> LLM-space presses
      -> LLM prefill of [prompt prefix + audio] (a KV press such as SST evicts speech KV here)
      -> question suffix -> greedy or sampled decoding

The audio is prefilled once (:meth:`SpeechLM.prefill`) and any number of questions are answered from the same
cache (:meth:`SpeechLM.answer`), so the question stays out of compression unless a press reads it by design
(SpeechPrune); every :class:`Answer` says which.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechpress import kv_cache
from speechpress.audio import Audio, load_audio
from speechpress.errors import AudioError, ConfigError, DataError, ModelLoadError, PressError
from speechpress.features import iter_feature_windows, num_windows
from speechpress.model.config import SpeechLMConfig
from speechpress.model.lengths import encoder_frames_for_mel_frames, tokens_for_mel_frames, window_token_spans
from speechpress.presses import AudioTokens, Press, PressContext
from speechpress.presses.chain import build_chain, new_press, token_presses
from speechpress.presses.base import segment_mean
from speechpress.presses.streaming import streaming_prefix


@dataclass
class AudioContext:
    """The LLM state after prefilling [prompt prefix + compressed audio]; ask it as many questions as you like."""

    cache: object  # transformers Cache
    next_position: int  # RoPE position of the next token (beyond the cache length once a KV press evicted)
    prefix_tokens: int
    duration: float
    encoder_tokens: int  # audio tokens entering the press chain
    llm_audio_tokens: int  # audio tokens that entered the LLM
    cached_audio_tokens: int  # audio entries left in the KV cache after prefill
    spans: torch.Tensor  # [n, 2] seconds covered by each audio token that entered the LLM
    press: str
    query_in_compression: bool
    prefill_seconds: float = 0.0

    @property
    def cached_tokens(self) -> int:
        return self.prefix_tokens + self.cached_audio_tokens


@dataclass
class Answer:
    text: str
    token_ids: list[int]
    question: str
    press: str
    duration: float
    encoder_tokens: int
    llm_audio_tokens: int
    cached_audio_tokens: int
    query_in_compression: bool
    prefill_seconds: float
    decode_seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class ResolvedChain(list):
    """A press chain already checked for one model and moved to its device (what ``SpeechLM.press_chain``
    returns); handing it back to the same model resolves nothing again."""

    def __init__(self, presses=(), model_id: int | None = None):
        super().__init__(presses)
        self.model_id = model_id


class SpeechLM(nn.Module):
    def __init__(self, config: SpeechLMConfig, tokenizer, modules: tuple[nn.Module, nn.Module, nn.Module] | None = None):
        """``modules`` = (encoder, projector, llm) taken as they are (the transformers backends pass a
        checkpoint's own modules); otherwise they are built from ``config``."""
        super().__init__()
        config.validate()
        self.config = config
        self.tokenizer = tokenizer
        self.encoder, self.projector, self.llm = modules if modules is not None else self._build_modules(config, tokenizer)
        # Trained presses live with the model so save/load keeps them.
        self.presses = nn.ModuleDict(
            {name: self._new_press(name, **kwargs) for name, kwargs in config.presses.items()}
        )
        for token in (config.audio_bos, config.audio_token, config.audio_eos):
            if tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
                raise ModelLoadError(f"tokenizer lacks the special token {token}")
        self.stop_token_ids = {tokenizer.eos_token_id}
        self.encoder_int8 = False  # set by quantize_encoder_int8
        self.eval()

    @staticmethod
    def _build_modules(config: SpeechLMConfig, tokenizer) -> tuple[nn.Module, nn.Module, nn.Module]:
        encoder = WhisperEncoder(WhisperConfig(**config.encoder))
        llm_config = AutoConfig.for_model(**dict(config.llm))
        llm_config.pad_token_id = tokenizer.pad_token_id
        llm_config.eos_token_id = tokenizer.eos_token_id
        llm = AutoModelForCausalLM.from_config(llm_config, attn_implementation="sdpa")
        d_enc, d_llm = config.encoder_output_dim, llm.config.hidden_size
        if config.projector == "linear":
            projector = nn.Linear(d_enc, d_llm)
        elif config.projector == "mlp":
            projector = nn.Sequential(nn.Linear(d_enc, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))
        else:
            projector = nn.Identity()
        return encoder, projector, llm

    # ----------------------------------------------------------------- construction and persistence
    @classmethod
    def from_config(cls, config: SpeechLMConfig, tokenizer=None, seed: int | None = 0) -> "SpeechLM":
        """A randomly initialised model (for tests, `init-model`, and training from scratch)."""
        from speechpress.model.tokenizer import build_byte_tokenizer

        tokenizer = tokenizer or build_byte_tokenizer()
        config = copy.deepcopy(config)
        config.llm.setdefault("vocab_size", len(tokenizer))
        if seed is not None:
            torch.manual_seed(seed)
        return cls(config, tokenizer)

    @classmethod
    def compose(
        cls, encoder: str, llm: str, projector: str = "mlp", encoder_pool: int = 2, encoder_pool_mode: str = "mean",
        system_prompt: str | None = None, seed: int = 0, log=None,
    ) -> "SpeechLM":
        """A model of pretrained parts: ``encoder`` a Whisper source, ``llm`` a causal-LM source (short names such
        as "whisper-base" and "smollm2-135m-instruct", directories, CTranslate2 / GGUF files, package:NAME or hub
        ids; see ``speechpress.model.sources``) and a fresh projector. Saving it stores only what differs from the
        bases, which it names by source and sha256."""
        from speechpress.model.bases import compose

        return compose(cls, encoder, llm, projector=projector, encoder_pool=encoder_pool, encoder_pool_mode=encoder_pool_mode,
                       system_prompt=system_prompt, seed=seed, log=log)

    def save_pretrained(self, directory: str | Path, dtype=None) -> None:
        """config.json + model.safetensors + tokenizer files; written beside, then moved in (never half-written).
        ``dtype`` ("fp16", "bf16") stores the weights at that precision, half the size; loading casts them back to
        the model's fp32 unless ``from_pretrained(dtype=...)`` asks otherwise."""
        from speechpress.model.persistence import save_model

        save_model(self, directory, dtype=dtype)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, device: str | None = None, dtype=None, system_prompt: str | None = None,
        attn_implementation: str | None = None,
    ) -> "SpeechLM":
        """A speechpress model directory, a transformers checkpoint with a backend (Qwen2-Audio, Qwen2.5-Omni:
        see ``speechpress.model.backends``), or a hub id of either (downloaded where there is a network).
        ``dtype``: "auto" (the checkpoint's, the default), "fp32", "bf16" or "fp16". ``device="auto"`` and
        ``attn_implementation``: see :meth:`AutoSpeechLM.from_pretrained`."""
        from speechpress.model.auto import AutoSpeechLM  # the loader above both SpeechLM and the backends

        return AutoSpeechLM.from_pretrained(name_or_path, device=device, dtype=dtype, system_prompt=system_prompt, cls=cls,
                                            attn_implementation=attn_implementation)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.llm.parameters()).dtype

    def quantize_encoder_int8(self, keep_fp32: tuple[str, ...] = ("fc2",)) -> "SpeechLM":
        """Quantize the encoder's ``nn.Linear`` layers to int8 in place (PyTorch dynamic quantization: int8
        weights, activations quantized per batch on the fly), except those named in ``keep_fp32``, and return the
        model. CPU only.

        Why: on CPU the encoder is most of the cost of a long recording (Whisper-base: about 87 GFLOPs per 30 s
        window, on every window whatever the press keeps), and its linear layers are nearly all of its FLOPs.
        Why not ``fc2``: its input is the GELU output of ``fc1``, whose outliers one per-batch activation scale
        flattens. On Whisper-base with every linear quantized the pooled encoder output moved by 35 % (relative
        L2; ``fc2`` alone 31 %) and WER rose 14 points (0.431 -> 0.572 on 60 test utterances, speechpress-smol);
        see docs/eval.md for the figures with ``fc2`` kept in fp32 and ``benchmarks/throughput.py
        --int8-encoder`` for the speed. Measure the accuracy cost on your own benchmark (``speechpress eval
        --int8-encoder`` writes its own runs beside the fp32 ones).

        The convolutions, positional embeddings, projector and LLM stay as they are. The quantized encoder has
        its own encoder-cache fingerprint, so its outputs never mix with the fp32 encoder's. Afterwards the model
        is for CPU inference only: saving it is refused (save the fp32 model), and neither training nor another
        device is supported. The transformers backends work too, from fp32 weights (their audio towers are
        quantized in place, in the checkpoint's own modules).
        ``ConfigError`` on a non-CPU device, non-fp32 encoder weights, or a torch without quantized CPU kernels.
        """
        if self.encoder_int8:
            return self
        devices = sorted({str(t.device) for t in (*self.encoder.parameters(), *self.encoder.buffers())})
        if devices != ["cpu"]:
            raise ConfigError(
                f"the int8 encoder runs on CPU only (PyTorch's dynamic int8 kernels); this model's encoder is on "
                f"{', '.join(devices) or 'no device'}: load it on the CPU (device='cpu', --device cpu)"
            )
        dtypes = sorted({str(p.dtype).replace("torch.", "") for p in self.encoder.parameters() if p.is_floating_point()})
        if dtypes != ["float32"]:
            raise ConfigError(
                f"the int8 encoder is quantized from fp32 weights, but this model's encoder holds {', '.join(dtypes)}: "
                "load it in fp32 (dtype='fp32'; --dtype fp32 in ask and transcribe)"
            )
        names = {name for name, m in self.encoder.named_modules()
                 if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] not in keep_fp32}
        if not names:
            raise ConfigError(f"this model's encoder ({type(self.encoder).__name__}) has no linear layers to quantize")
        if not [e for e in torch.backends.quantized.supported_engines if e != "none"]:
            raise ConfigError("this PyTorch build has no quantized CPU engine (fbgemm, x86 or qnnpack) for the int8 encoder")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as err:
            raise ConfigError(f"this PyTorch has no torch.ao.quantization.quantize_dynamic for the int8 encoder ({err})") from None
        with warnings.catch_warnings():
            # torch.ao.quantization announces its migration to torchao on every call; keep the CLI's output clean.
            warnings.filterwarnings("ignore", message=r"(?s)torch\..*deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"(?s)torch\..*deprecated", category=UserWarning)
            quantize_dynamic(self.encoder, names, dtype=torch.qint8, inplace=True)
        self.encoder_int8 = True
        return self

    # ----------------------------------------------------------------------------------- presses
    def _new_press(self, name: str, **kwargs) -> Press:
        return new_press(self.config, name, **kwargs)

    def press_chain(
        self, spec=None, ratio: float | None = None, tokens_per_second: float | None = None, options: dict | None = None
    ) -> list[Press]:
        """Resolve a press spec ("avgpool", "avgpool:2+sst:8", a Press, or a list) into a checked chain on this
        model's device, using the trained presses stored with the model (see ``presses.chain.build_chain``).
        A chain this method returned is passed through as it is, so ``ask`` -> ``prefill`` resolves once."""
        if isinstance(spec, ResolvedChain) and spec.model_id == id(self) and ratio is None and tokens_per_second is None and not options:
            return spec
        chain = build_chain(self.config, spec, ratio, tokens_per_second, options, trained=self.presses)
        return ResolvedChain((press.to(self.device) for press in chain), model_id=id(self))

    # ------------------------------------------------------------------------------------- audio
    def encode(self, audio, batch_windows: int = 8, progress: bool = False) -> AudioTokens:
        """Encoder frames of the whole recording (batch of one), pooled by ``encoder_pool``, with time spans and
        the recording's ``duration``. A path is decoded window by window (``audio.stream_audio``): the waveform
        and the mel are never whole in memory, only ``batch_windows`` windows of them; an array or
        :class:`Audio` is windowed in memory. Both give the same tokens."""
        return self.encode_pressed(audio, (), batch_windows, progress)[0]

    @torch.no_grad()  # never for training (that runs encode_feature_windows): no graph kept over an hour of frames
    def encode_pressed(self, audio, presses=(), batch_windows: int = 8, progress: bool = False,
                       project: bool = False) -> tuple[AudioTokens, int]:
        """:meth:`encode` with ``presses`` (a chain's ``streaming_prefix``) run on the tokens as each batch of
        windows is encoded, so only their output is kept; and the count of encoder tokens that went in. With
        ``project`` the projector runs as they stream too (it acts on each token alone) and the tokens are
        LLM-space: the presses' output is never held beside the projector's."""
        from tqdm import tqdm

        from speechpress.presses.streaming import StreamingPresses

        from speechpress.audio import header_seconds, stream_audio
        from speechpress.features import iter_stream_feature_windows

        cfg = self.config
        per_window = int(round(cfg.window_seconds * cfg.sample_rate))
        if isinstance(audio, (str, os.PathLike)):
            pieces = stream_audio(audio, per_window, cfg.sample_rate)
            batches = iter_stream_feature_windows(pieces, cfg.num_mel_bins, cfg.window_seconds, cfg.sample_rate, batch_windows)
            windows, known = max(1, math.ceil(header_seconds(audio) / cfg.window_seconds)), None
        else:
            samples = audio.samples if isinstance(audio, Audio) else audio
            known = len(samples) / cfg.sample_rate
            windows = num_windows(len(samples), cfg.window_seconds, cfg.sample_rate)
            batches = iter_feature_windows(samples, cfg.num_mel_bins, cfg.window_seconds, cfg.sample_rate, batch_windows)
        stream = StreamingPresses(list(presses), then=self.projector if project else None)
        bar = tqdm(total=windows, desc="encoding", unit="window", leave=False, disable=None if progress and windows > batch_windows else True)

        def run(batch, cap: float) -> None:
            bar.update(len(batch))
            for frames, frame_spans in self.encode_feature_windows(batch, [cap] * len(batch)):
                if frames.shape[0] == 0:  # a last sliver of audio that "drop" pooling discards
                    continue
                stream.push(frames, frame_spans)

        # Spans are capped at the recording's end. A stream learns it at its last batch, so each batch is encoded
        # once the next one exists (capped at infinity: its windows end before the recording does).
        held = None
        for batch in batches:
            if held is not None:
                run(held, known if known is not None else math.inf)
            held = batch
        duration = known if known is not None else (held[-1].index * per_window + held[-1].valid_samples) / cfg.sample_rate
        run(held, duration)
        bar.close()
        if not stream.tokens_in:
            raise AudioError(f"{duration:.3f} s of audio gives this model no audio tokens; it is too short")
        emb, spans = stream.finish()
        return AudioTokens(emb[None], torch.tensor([emb.shape[0]]), spans[None], duration=duration), stream.tokens_in

    def encode_feature_windows(self, windows: list, durations: list[float]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tokens [n, D], time spans [n, 2]) of each 30 s feature window, in one encoder batch; ``durations`` are
        the lengths of the recordings the windows come from (a span never runs past its recording's end).
        Inference (:meth:`encode`) and training (several clips' windows in one batch) both run this."""
        encoder_dtype = self.encoder.conv1.weight.dtype if hasattr(self.encoder, "conv1") else None
        feats = torch.stack([w.features for w in windows]).to(self.device, encoder_dtype)
        frames = self.encode_windows(feats, [w.valid_frames for w in windows])
        return [(f, window_token_spans(w.start, w.valid_frames, f.shape[0], self.config, d))
                for w, d, f in zip(windows, durations, frames)]

    def encode_windows(self, features: torch.Tensor, valid_mel_frames: list[int]) -> list[torch.Tensor]:
        """Encoder tokens of each 30 s window ([mel, 3000] log-mel, with its count of valid mel frames), after
        ``encoder_pool``; exactly ``tokens_for_mel_frames`` of them. Backends override this with their tower."""
        hidden = self.encoder(features).last_hidden_state
        out = []
        for mel, h in zip(valid_mel_frames, hidden):
            n = encoder_frames_for_mel_frames(mel)
            frames = h[:n]
            pool = self.config.encoder_pool
            if pool > 1 and self.config.encoder_pool_mode == "stack":
                count = tokens_for_mel_frames(mel, self.config)
                index = torch.clamp(torch.arange(count * pool, device=frames.device), max=n - 1)  # a short tail repeats its last frame
                frames = frames[index].reshape(count, pool * frames.shape[-1])
            elif pool > 1:
                first = torch.arange(tokens_for_mel_frames(mel, self.config)) * pool
                frames = segment_mean(frames, first, torch.clamp(first + pool, max=n))
            out.append(frames)
        return out

    def as_audio(self, audio) -> Audio:
        """A path is decoded and resampled; a bare array is taken to be mono at the model's sample rate
        (16 kHz), as Whisper does; pass an :class:`Audio` from `load_audio(array, sample_rate=...)` otherwise."""
        if isinstance(audio, Audio):
            return audio
        if isinstance(audio, (np.ndarray, torch.Tensor)):
            data = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio
            return load_audio(data, sample_rate=self.config.sample_rate, target_rate=self.config.sample_rate)
        return load_audio(audio, target_rate=self.config.sample_rate)

    def project(self, tokens: AudioTokens) -> AudioTokens:
        return AudioTokens(self.projector(tokens.embeddings), tokens.lengths, tokens.spans)

    def press_tokens(self, tokens: AudioTokens, chain: list[Press], query_embeds: torch.Tensor | None = None,
                     projected: bool = False) -> AudioTokens:
        """Run the chain's token presses and return LLM-space tokens; the projector runs where the chain passes
        from encoder-space to LLM-space presses (``projected``: it already ran, as the audio streamed). A KV
        press acts later, in :meth:`prefill` (or in training)."""
        context = PressContext(query_embeds=query_embeds, llm=self.llm)
        if projected and any(p.space == "encoder" for p in token_presses(chain)):
            raise PressError("encoder-space presses cannot run on tokens that were already projected")
        for press in token_presses(chain):
            if press.space != "encoder" and not projected:
                tokens, projected = self.project(tokens), True
            tokens = press(tokens, context)
        return tokens if projected else self.project(tokens)

    # ------------------------------------------------------------------------------------ prompts
    def prompt_ids(self, question: str | None) -> tuple[list[int], list[int]]:
        """Token ids before and after the audio. The prefix never depends on the question, so one prefilled
        audio context serves every question."""
        # "audio" as a key too: Qwen2-Audio's template tests `'audio' in content`, ours tests the type.
        messages = [{"role": "user", "content": [{"type": "audio", "audio": "recording"}, {"type": "text", "text": question or ""}]}]
        if self.config.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.config.system_prompt})
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        audio_id = self.tokenizer.convert_tokens_to_ids(self.config.audio_token)
        if ids.count(audio_id) != 1:
            raise ModelLoadError("the chat template must place exactly one audio placeholder")
        at = ids.index(audio_id)
        return ids[:at], ids[at + 1 :]

    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        return self.llm.get_input_embeddings()(torch.tensor([ids], device=self.device))

    # ------------------------------------------------------------------------------ prefill / answer
    @torch.inference_mode()
    def prefill(
        self, audio, press=None, ratio=None, tokens_per_second=None, question: str | None = None, progress: bool = False,
        encoded: AudioTokens | None = None,
    ) -> AudioContext:
        """Encode, compress and prefill the audio once. ``question`` is read only by query-aware presses.

        ``encoded``: this audio's :meth:`encode` output, so a caller trying several presses encodes once (its
        ``prefill_seconds`` then leaves the encoding out). The one path to the LLM: token presses, then the
        last press's ``prefill`` hook (a full prefill, unless it is a KV press that evicts as it goes).
        """
        if encoded is None and not isinstance(audio, (str, os.PathLike)):
            audio = self.as_audio(audio)  # a path is streamed by encode, never decoded whole
        chain = self.press_chain(press, ratio, tokens_per_second)
        query_aware = any(p.query_aware for p in chain)
        if query_aware and not question:
            names = ", ".join(p.name for p in chain if p.query_aware)
            raise PressError(f"press {names} reads the question: prefill with question=...")
        start = time.perf_counter()
        prefix_ids, _ = self.prompt_ids(None)
        if encoded is None:
            self.check_fits(audio, chain, len(prefix_ids))  # before hours of encoding, not after
            # Uniform presses at the chain's start run as the audio is encoded: an hour of encoder output is
            # never whole in memory, only what they keep.
            # When no encoder-space press is left, the projector runs as it streams too.
            streamed = streaming_prefix(chain)
            projected = not any(p.space == "encoder" for p in token_presses(chain[len(streamed):]))
            tokens, encoder_tokens = self.encode_pressed(audio, streamed, progress=progress, project=projected)
        else:
            streamed, projected, tokens, encoder_tokens = [], False, encoded, int(encoded.lengths[0])
        duration = tokens.duration if tokens.duration is not None else self.as_audio(audio).duration
        query = self.embed_ids(self.tokenizer(question, add_special_tokens=False)["input_ids"]) if query_aware else None
        tokens = self.press_tokens(tokens, chain[len(streamed):], query, projected=projected)
        n = int(tokens.lengths[0])
        stage = chain[-1] if chain else new_press(self.config, "identity")
        self.check_audio_positions(len(prefix_ids), stage.prefill_positions(n, duration), duration)
        observe = {"question_embeds": query.to(self.dtype)} if stage.query_aware and stage.space == "kv" else {}
        state = stage.prefill(self.llm, self.embed_ids(prefix_ids), tokens.embeddings[:, :n].to(self.dtype),
                              duration_s=duration, audio_spans=tokens.spans[0, :n], **observe)
        return AudioContext(
            cache=state.cache,
            next_position=state.next_position,
            prefix_tokens=len(prefix_ids),
            duration=duration,
            encoder_tokens=encoder_tokens,
            llm_audio_tokens=n,
            cached_audio_tokens=state.kept_tokens - len(prefix_ids),
            spans=tokens.spans[0, :n].cpu(),
            press="+".join(f"{p.name}" + ("" if p.name == "identity" else f":{_target(p)}") for p in chain) + _alphas_used(stage, state),
            query_in_compression=query_aware,
            prefill_seconds=time.perf_counter() - start,
        )

    def check_fits(self, audio, chain, prefix_tokens: int) -> None:
        """Refuse, from its length alone (a file's header), audio that will not fit the LLM's positions at this
        compression, before it is encoded; :meth:`check_audio_positions` checks the exact count later."""
        from speechpress.audio import header_seconds
        from speechpress.model.lengths import audio_token_count

        if isinstance(audio, (str, os.PathLike)):
            seconds = header_seconds(audio)
        else:
            seconds = len(audio.samples if isinstance(audio, Audio) else audio) / self.config.sample_rate
        n = audio_token_count(int(seconds * self.config.sample_rate), self.config)
        for press in token_presses(chain):
            n = press.output_length(n, seconds)
        stage = chain[-1] if chain else new_press(self.config, "identity")
        self.check_audio_positions(prefix_tokens, stage.prefill_positions(n, seconds), seconds)

    def check_audio_positions(self, prefix_tokens: int, audio_positions: int, duration_s: float) -> None:
        """Refuse audio whose positions run past the LLM's before any LLM forward, saying how much audio fits
        at this compression (RoPE past ``max_position_embeddings`` is untrained; SST's positions grow with the
        uncompressed length)."""
        limit = getattr(self.llm.config, "max_position_embeddings", None)
        if not limit or prefix_tokens + audio_positions <= limit:
            return
        per_second = audio_positions / max(duration_s, 1e-9)
        fits = max(0.0, (limit - prefix_tokens - 64) / per_second / 60)  # 64 positions left for a short question
        raise ConfigError(
            f"{duration_s / 60:.1f} min of audio takes {audio_positions} positions in this LLM at this compression "
            f"(with the {prefix_tokens}-token prefix), but it takes at most {limit} (max_position_embeddings): "
            f"about {fits:.1f} min fit; compress more or cut the recording"
        )

    def check_positions(self, context: AudioContext, question_tokens: int, new_tokens: int) -> None:
        """Refuse a prompt longer than the LLM's positions before running it: past them RoPE is untrained, and the
        question's attention alone grew with its square (a 100,000-character question asked for 40 GB)."""
        limit = getattr(self.llm.config, "max_position_embeddings", None)
        total = context.next_position + question_tokens + new_tokens
        if limit and total > limit:
            audio = context.next_position - context.prefix_tokens
            raise ConfigError(
                f"the prompt needs {total} tokens ({context.prefix_tokens} prefix + {audio} audio + {question_tokens} "
                f"question + {new_tokens} new), but this model's LLM takes at most {limit} (max_position_embeddings): "
                "shorten the question, compress the audio more or ask for fewer new tokens"
            )

    # Text after the audio (a question) runs through the LLM in pieces of at most this many tokens: attention over a
    # piece costs piece x cache, never question x question (a 100,000-token question asked for 40 GB at once).
    text_chunk_tokens = 512

    def _forward_ids(self, context: AudioContext, ids: list[int], position: int) -> torch.Tensor:
        out = None
        for start in range(0, len(ids), self.text_chunk_tokens):
            piece = ids[start : start + self.text_chunk_tokens]
            positions = torch.arange(position + start, position + start + len(piece), device=self.device)[None]
            out = self.llm(
                input_ids=torch.tensor([piece], device=self.device),
                past_key_values=context.cache,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
            )
        return out.logits[0, -1].float()

    @torch.inference_mode()
    def answer(
        self,
        context: AudioContext,
        question: str,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
    ) -> Answer:
        """Answer one question from a prefilled context; the context is left as it was, ready for the next."""
        if max_new_tokens < 1:
            raise PressError("max_new_tokens must be at least 1")
        _, suffix = self.prompt_ids(question)
        self.check_positions(context, len(suffix), max_new_tokens)
        cache_len = context.cache.get_seq_length()
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        start = time.perf_counter()
        generated: list[int] = []
        try:
            logits = self._forward_ids(context, suffix, context.next_position)
            position = context.next_position + len(suffix)
            for _ in range(max_new_tokens):
                token = _pick(logits, do_sample, temperature, top_p, top_k, generator)
                if token in self.stop_token_ids:
                    break
                generated.append(token)
                logits = self._forward_ids(context, [token], position)
                position += 1
        finally:
            kv_cache.truncate(context.cache, cache_len)
        return Answer(
            text=self.tokenizer.decode(generated, skip_special_tokens=True),
            token_ids=generated,
            question=question,
            press=context.press,
            duration=context.duration,
            encoder_tokens=context.encoder_tokens,
            llm_audio_tokens=context.llm_audio_tokens,
            cached_audio_tokens=context.cached_audio_tokens,
            query_in_compression=context.query_in_compression,
            prefill_seconds=context.prefill_seconds,
            decode_seconds=time.perf_counter() - start,
        )

    def ask(
        self, audio, questions: list[str] | str, press=None, ratio=None, tokens_per_second=None, progress: bool = False, **generation
    ) -> list[Answer]:
        """Compress once, ask many: one prefill serves every question, unless a press reads the question."""
        questions = [questions] if isinstance(questions, str) else list(questions)
        if not isinstance(audio, (str, os.PathLike)):
            audio = self.as_audio(audio)  # a path stays a path: encode streams it
        chain = self.press_chain(press, ratio, tokens_per_second)
        if any(p.query_aware for p in chain):
            return [self.answer(self.prefill(audio, chain, question=q, progress=progress), q, **generation) for q in questions]
        context = self.prefill(audio, chain, progress=progress)
        return [self.answer(context, q, **generation) for q in questions]

    @torch.inference_mode()
    def choice_logprobs(self, context: AudioContext, question: str, choices: list[str]) -> list[torch.Tensor]:
        """The log-probability of each option's tokens as the reply to ``question`` (teacher forcing), one tensor
        per option; the context is left as it was.

        Multiple choice scored by likelihood, as lm-evaluation-harness scores it: a small LLM that cannot write
        "B" on cue can still prefer the right option's words (docs/eval.md). The question runs once; each option
        runs on top of it and is cut off again."""
        if not choices:
            raise DataError("choice_logprobs needs at least one option")
        _, suffix = self.prompt_ids(question)
        option_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
        if any(not ids for ids in option_ids):
            raise DataError(f"an option has no tokens: {choices!r}")
        self.check_positions(context, len(suffix), max(len(ids) for ids in option_ids))
        cache_len = context.cache.get_seq_length()
        out = []
        try:
            first = self._forward_ids(context, suffix, context.next_position).log_softmax(-1)
            asked = context.cache.get_seq_length()
            position = context.next_position + len(suffix)
            for ids in option_ids:
                logits = self.llm(
                    input_ids=torch.tensor([ids], device=self.device),
                    past_key_values=context.cache,
                    position_ids=torch.arange(position, position + len(ids), device=self.device)[None],
                    use_cache=True,
                ).logits[0, :-1].float().log_softmax(-1)
                kv_cache.truncate(context.cache, asked)
                target = torch.tensor(ids, device=self.device)
                rest = logits.gather(1, target[1:, None]).squeeze(1)
                out.append(torch.cat([first[target[:1]], rest]).cpu())
        finally:
            kv_cache.truncate(context.cache, cache_len)
        return out

    def choose(self, context: AudioContext, question: str, choices: list[str]) -> Answer:
        """Answer a multiple-choice question with the letter of the likeliest option: the sum of its tokens'
        log-probabilities as the reply to the bare ``question`` (options not shown; lm-evaluation-harness's
        ``acc``). ``extra["choice_logprobs"]`` holds every option's sum."""
        from speechpress.data.schema import LETTERS

        start = time.perf_counter()
        sums = [float(lp.sum()) for lp in self.choice_logprobs(context, question, choices)]
        best = max(range(len(sums)), key=sums.__getitem__)
        return Answer(
            text=LETTERS[best], token_ids=[], question=question, press=context.press, duration=context.duration,
            encoder_tokens=context.encoder_tokens, llm_audio_tokens=context.llm_audio_tokens,
            cached_audio_tokens=context.cached_audio_tokens, query_in_compression=context.query_in_compression,
            prefill_seconds=context.prefill_seconds, decode_seconds=time.perf_counter() - start,
            extra={"choice_logprobs": sums},
        )

    @torch.inference_mode()
    def answer_logits(self, context: AudioContext, question: str, answer: str) -> torch.Tensor:
        """Logits [len(answer ids), vocab] for a given answer (teacher forcing), for tests and scoring."""
        _, suffix = self.prompt_ids(question)
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = suffix + answer_ids
        cache_len = context.cache.get_seq_length()
        positions = torch.arange(context.next_position, context.next_position + len(ids), device=self.device)[None]
        try:
            out = self.llm(
                input_ids=torch.tensor([ids], device=self.device),
                past_key_values=context.cache,
                position_ids=positions,
                use_cache=True,
            )
        finally:
            kv_cache.truncate(context.cache, cache_len)
        return out.logits[0, len(suffix) - 1 : len(ids) - 1].float()


def _alphas_used(stage: Press, state) -> str:
    """What an SST tokens-per-second target became: the whole alpha(s) it ran at, so no row is mislabelled."""
    alphas = getattr(state, "alphas", None)
    if not alphas or stage.tokens_per_second is None:
        return ""
    used = sorted(set(alphas))
    return f"(alpha {used[0]})" if len(used) == 1 else f"(alpha {used[0]}-{used[-1]})"


def _target(press: Press) -> str:
    if press.tokens_per_second is not None:
        return f"{press.tokens_per_second:g}tps"
    return f"{press.ratio:g}" if press.ratio is not None else "1"


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float, top_k: int, generator) -> int:
    if not do_sample:
        return int(torch.argmax(logits))
    if temperature <= 0:
        raise PressError("temperature must be > 0 when sampling")
    logits = logits / temperature
    if top_k and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < top_p
        mask = torch.zeros_like(probs, dtype=torch.bool)
        mask[order[keep]] = True
        probs = torch.where(mask, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = ["Answer", "AudioContext", "SpeechLM", "default_device"]
