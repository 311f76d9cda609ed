"""Training data: examples from manifests, a deterministic sharded sampler and decoded clips.

Why a sampler of our own instead of a DataLoader's: the batch of optimizer step ``s`` is a pure function of
(seed, s), so a resumed run, a run with gradient accumulation and a run on N processes all see exactly the
examples a single uninterrupted run would, and the sampler state in a checkpoint is just the step number.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechpress.errors import DataError

ASR_PROMPT = "Transcribe the speech."


@dataclass(frozen=True)
class TrainExample:
    """One (audio stretch, question, answer) triple; ``key`` names the audio stretch (shared by its questions)."""

    id: str
    audio: str
    offset: float
    duration: float
    task: str
    prompt: str  # as the model sees it (multiple choice: with lettered options)
    answer: str  # the target text (multiple choice: the letter)

    @property
    def clip_key(self) -> str:
        return f"{self.audio}|{self.offset:.3f}|{self.duration:.3f}"


@dataclass
class TrainingSet:
    examples: list[TrainExample]
    skipped: dict  # reason -> count

    def __len__(self) -> int:
        return len(self.examples)


def load_training_set(section, tokenizer=None) -> TrainingSet:
    """The examples a ``DataSection`` asks for; a missing manifest or an empty result is a ``DataError``."""
    from speechpress.data.loaders import load_manifest

    examples: list[TrainExample] = []
    skipped: dict[str, int] = {}
    seen_utterances: set[tuple] = set()
    for manifest in section.train:
        if not Path(manifest).is_file():
            raise DataError(f"{manifest}: training manifest not found")
        for ex in load_manifest(manifest):
            rows = []
            # With utterances, an asr_short row is among the expanded utterance clips; every other row stays.
            keep_row = not (section.utterances and ex.task == "asr_short")
            if section.utterances:
                spans = []
                for u in (ex.metadata or {}).get("utterances") or []:
                    key = (str(ex.audio), round(float(u["start"]), 3), round(float(u["end"]), 3))
                    if key in seen_utterances or not str(u.get("text", "")).strip():
                        continue
                    seen_utterances.add(key)
                    spans.append((key[1], key[2], str(u["text"]).strip()))
                rec = (ex.metadata or {}).get("recording", Path(ex.audio).stem)
                for start, end, text in pack_utterances(sorted(spans), section.pack_seconds):
                    rows.append(TrainExample(f"{rec}-u{start:.3f}", str(ex.audio), start, round(end - start, 3), "asr_short", ASR_PROMPT, text))
            if keep_row:
                duration = ex.duration if ex.duration is not None else _file_seconds(ex.audio) - ex.offset
                rows.append(TrainExample(ex.id, str(ex.audio), float(ex.offset), float(duration), ex.task, ex.text_prompt(), ex.answer))
            for row in rows:
                if section.tasks and row.task not in section.tasks:
                    continue
                if row.duration > section.max_duration:
                    skipped["longer than data.max_duration"] = skipped.get("longer than data.max_duration", 0) + 1
                    continue
                if tokenizer is not None and len(tokenizer(row.answer, add_special_tokens=False)["input_ids"]) + 1 > section.max_answer_tokens:
                    skipped["answer longer than data.max_answer_tokens"] = skipped.get("answer longer than data.max_answer_tokens", 0) + 1
                    continue
                examples.append(row)
    if section.max_examples is not None:
        examples = examples[: section.max_examples]
    if not examples:
        detail = f" (skipped: {skipped})" if skipped else ""
        tasks = f" for tasks {', '.join(section.tasks)}" if section.tasks else ""
        raise DataError(f"empty training set: no usable example in {', '.join(section.train)}{tasks}{detail}")
    return TrainingSet(examples, skipped)


def pack_utterances(spans: list[tuple[float, float, str]], pack_seconds: float | None) -> list[tuple[float, float, str]]:
    """Consecutive (start, end, text) utterances joined greedily into clips no longer than ``pack_seconds``."""
    if not pack_seconds:
        return spans
    packed: list[tuple[float, float, str]] = []
    for start, end, text in spans:
        if packed and end - packed[-1][0] <= pack_seconds:
            first, _, joined = packed[-1]
            packed[-1] = (first, end, f"{joined} {text}")
        else:
            packed.append((start, end, text))
    return packed


def _file_seconds(path) -> float:
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate


class StepSampler:
    """Indices of the global batch of each optimizer step, and this process's share of it.

    The example stream is the concatenation of per-epoch permutations (epoch e shuffled by seed + e); step s
    takes stream[s*G : (s+1)*G] for the global batch size G. Micro-step m of grad_accum takes the m-th equal
    slice of that, and rank r the r-th equal part of the micro-slice, so ranks never share an example and the
    union over ranks and micro-steps is the single-process batch.
    """

    def __init__(self, n: int, global_batch: int, seed: int, world_size: int = 1, rank: int = 0, grad_accum: int = 1):
        per = global_batch // grad_accum
        if global_batch % (grad_accum * world_size):
            raise DataError(
                f"the global batch {global_batch} does not split into {grad_accum} accumulation step(s) x {world_size} process(es)"
            )
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.world_size, self.rank, self.grad_accum = world_size, rank, grad_accum
        self.per_micro = per // world_size
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def global_indices(self, step: int) -> list[int]:
        start = step * self.global_batch
        return [int(self._perm((start + i) // self.n)[(start + i) % self.n]) for i in range(self.global_batch)]

    def micro_batches(self, step: int) -> list[list[int]]:
        """This rank's index lists for each accumulation micro-step of optimizer step ``step``."""
        batch = self.global_indices(step)
        per = self.global_batch // self.grad_accum
        out = []
        for m in range(self.grad_accum):
            micro = batch[m * per : (m + 1) * per]
            out.append(micro[self.rank * self.per_micro : (self.rank + 1) * self.per_micro])
        return out

    def epoch_of(self, step: int) -> float:
        return step * self.global_batch / self.n


class AudioStore:
    """Decoded recordings (16 kHz mono), kept in memory up to ``max_seconds`` so clips of one file decode once."""

    def __init__(self, sample_rate: int = 16000, max_seconds: float = 4 * 3600):
        self.sample_rate, self.max_samples = sample_rate, int(max_seconds * sample_rate)
        self._files: OrderedDict[str, np.ndarray] = OrderedDict()
        self._held = 0

    def recording(self, path: str) -> np.ndarray:
        from speechpress.audio import load_audio

        if path not in self._files:
            samples = load_audio(path, target_rate=self.sample_rate).samples
            self._files[path] = samples
            self._held += len(samples)
            while self._held > self.max_samples and len(self._files) > 1:
                _, old = self._files.popitem(last=False)
                self._held -= len(old)
        self._files.move_to_end(path)
        return self._files[path]

    def clip(self, ex: TrainExample) -> np.ndarray:
        samples = self.recording(ex.audio)
        start = int(round(ex.offset * self.sample_rate))
        stop = min(len(samples), start + int(round(ex.duration * self.sample_rate)))
        if stop <= start:
            raise DataError(f"{ex.id}: empty audio stretch at {ex.offset:.3f} s of {ex.audio}")
        return samples[start:stop]


def clip_windows(samples: np.ndarray, config) -> list:
    """The 30 s feature windows of one clip (a clip longer than 30 s gives several)."""
    from speechpress.features import iter_feature_windows

    windows = []
    for batch in iter_feature_windows(samples, config.num_mel_bins, config.window_seconds, config.sample_rate, batch_windows=64):
        windows.extend(batch)
    return windows
