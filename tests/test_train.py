"""Training: loss goes down, an exact loss at a fixed seed, exact resume, every recipe runs, bad input fails early."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechpress.errors import ConfigError, DataError
from speechpress.train import load_config, train
from speechpress.train.data import StepSampler
from train_helpers import CONFIGS, base, log_rows, make_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("train-corpus"))


@pytest.fixture(scope="session")
def frame_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frame-cache")


# ------------------------------------------------------------------------------- loss goes down, exactly


@pytest.fixture(scope="module")
def asr_run(corpus, frame_cache, tmp_path_factory):
    """20 steps of the asr recipe (projector + LLM) on the 12 utterance clips of the test corpus, seed 0."""
    out = tmp_path_factory.mktemp("asr") / "run"
    cfg = load_config(data=base(corpus, out, frame_cache, train={"steps": 20, "lr": 5e-3, "trainable": ["projector", "llm"], "warmup_steps": 2}))
    result = train(cfg, log=lambda *_: None)
    return out, result


def test_loss_decreases_on_tiny_model(asr_run):
    out, result = asr_run
    losses = [r["loss"] for r in log_rows(out)]
    assert len(losses) == 20 and result.losses == pytest.approx(losses, abs=1e-6)
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.6 * first, (first, last)  # 5.5 (uniform over 262 byte tokens) -> well under 3.3
    assert (out / "model" / "model.safetensors").is_file() and (out / "summary.json").is_file()


def test_exact_loss_at_fixed_seed(asr_run):
    out, _ = asr_run
    losses = [r["loss"] for r in log_rows(out)]
    # Pinned from this recipe at seed 0 (torch 2.13 CPU, the seed-0 generated corpus); a change here means
    # the data order, the prompt layout, the loss normalisation or the model changed.
    # (Re-pinned when the utterance expansion stopped dropping each recording's first utterance: 8 -> 12 clips.)
    assert losses[0] == pytest.approx(5.5430762, abs=1e-5)
    assert losses[9] == pytest.approx(3.290573, abs=1e-5)


def test_frame_cache_is_used_and_keyed_by_encoder(asr_run, frame_cache):
    out, _ = asr_run
    summary = json.loads((out / "summary.json").read_text())
    # 12 clips, 20 steps x 4: every clip is encoded at most once, the other reads come from the cache
    assert summary["cache_misses"] <= 12 and summary["cache_hits"] >= 20 * 4 - 12
    entries = list(frame_cache.iterdir())
    assert len(entries) == 1 and len(list(entries[0].glob("*.safetensors"))) == 12  # one fingerprint folder


# ------------------------------------------------------------------------------------------- resume


def test_resume_reproduces_the_uninterrupted_run(corpus, frame_cache, tmp_path):
    settings = {"train": {"steps": 4, "checkpoint_every": 2, "trainable": ["projector", "llm"]}}
    straight = tmp_path / "straight"
    train(load_config(data=base(corpus, straight, frame_cache, **settings)), log=lambda *_: None)

    killed = tmp_path / "killed"
    cfg = load_config(data=base(corpus, killed, frame_cache, **settings))
    train(cfg, stop_after=3, log=lambda *_: None)  # dies after step 3: step 3 is lost, the checkpoint is step 2
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-0000002"]
    assert [r["step"] for r in log_rows(killed)] == [1, 2, 3] and not (killed / "model").exists()
    (killed / "checkpoints" / ".step-0000004.tmp").mkdir()  # a half-written checkpoint from the kill is ignored
    result = train(load_config(data=base(corpus, killed, frame_cache, **settings)), log=lambda *_: None)
    assert result.resumed_from == 2

    a, b = log_rows(straight), log_rows(killed)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa = load_file(str(straight / "model" / "model.safetensors"))
    wb = load_file(str(killed / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoints_hold_no_pickle_and_a_planted_pickle_never_runs(corpus, frame_cache, tmp_path):
    """A shared checkpoint must not be able to run code: its state is safetensors + JSON, and a pickle file
    planted in it (as an older speechpress wrote them) is refused by name, never unpickled."""
    settings = {"train": {"steps": 4, "checkpoint_every": 2, "trainable": ["projector"]}}
    run = tmp_path / "run"
    train(load_config(data=base(corpus, run, frame_cache, **settings)), stop_after=2, log=lambda *_: None)
    ckpt = run / "checkpoints" / "step-0000002"
    assert sorted(p.suffix for p in ckpt.iterdir()) == [".json"] * 4 + [".safetensors"] * 4
    assert {p.stem for p in ckpt.glob("*.safetensors")} == {"trainable", "optimizer-0", "scheduler", "rng-0"}

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (ckpt / "scheduler.json").unlink()
    (ckpt / "scheduler.safetensors").unlink()
    torch.save({"x": Payload()}, ckpt / "scheduler.pt")
    with pytest.raises(ConfigError, match=r"scheduler\.pt: a pickle checkpoint file"):
        train(load_config(data=base(corpus, run, frame_cache, **settings)), log=lambda *_: None)
    assert not marker.exists()


def test_a_damaged_checkpoint_state_is_a_clear_error(corpus, frame_cache, tmp_path):
    settings = {"train": {"steps": 4, "checkpoint_every": 2, "trainable": ["projector"]}}
    run = tmp_path / "run"
    train(load_config(data=base(corpus, run, frame_cache, **settings)), stop_after=2, log=lambda *_: None)
    ckpt = run / "checkpoints" / "step-0000002"
    (ckpt / "optimizer-0.json").write_text('{"format": "speechpress-state/1", "state": {"__tensor__": "t999"}}')
    with pytest.raises(ConfigError, match=r"optimizer-0\.json: refers to a tensor 't999'"):
        train(load_config(data=base(corpus, run, frame_cache, **settings)), log=lambda *_: None)
    (ckpt / "optimizer-0.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(ConfigError, match=r"unreadable checkpoint state"):
        train(load_config(data=base(corpus, run, frame_cache, **settings)), log=lambda *_: None)


def test_sampler_shards_are_disjoint_and_cover_the_global_batch():
    single = StepSampler(10, 4, seed=3)
    ranks = [StepSampler(10, 4, seed=3, world_size=2, rank=r, grad_accum=2) for r in range(2)]
    for step in range(7):  # crosses epochs
        parts = [ix for s in ranks for micro in s.micro_batches(step) for ix in micro]
        assert sorted(parts) == sorted(single.micro_batches(step)[0])
        r0 = {i for m in ranks[0].micro_batches(step) for i in m}
        r1 = {i for m in ranks[1].micro_batches(step) for i in m}
        assert not r0 & r1
    epoch = [i for step in range(5) for i in single.global_indices(step)][:10]
    assert sorted(epoch) == list(range(10))  # each epoch is a permutation


def test_grad_accumulation_equals_one_big_batch(corpus, frame_cache, tmp_path):
    settings = {"train": {"steps": 2, "batch_size": 4, "trainable": ["projector", "llm"]}}
    one = tmp_path / "one"
    train(load_config(data=base(corpus, one, frame_cache, **settings)), log=lambda *_: None)
    acc = tmp_path / "acc"
    train(load_config(data=base(corpus, acc, frame_cache, train={**settings["train"], "grad_accum": 4})), log=lambda *_: None)
    assert [r["loss"] for r in log_rows(one)] == pytest.approx([r["loss"] for r in log_rows(acc)], abs=1e-5)


# ------------------------------------------------------------------------------- every recipe, one step


RECIPE_FILES = sorted(p.name for p in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", RECIPE_FILES)
def test_each_recipe_runs_one_step(name, corpus, frame_cache, tmp_path):
    from speechpress.model.speechlm import SpeechLM

    from helpers import tiny_model

    out = tmp_path / "run"
    overrides = [f"model.init=tiny", f"output_dir={out}", f"data.train=[{corpus}]", f"data.cache_dir={frame_cache}",
                 "data.max_duration=12", "train.batch_size=2", "train.warmup_steps=0", "train.progress=false"]
    cfg = load_config(CONFIGS / name, overrides + ([] if "sst" in name else ["train.steps=1"]))
    if cfg.recipe == "sst":
        cfg = load_config(CONFIGS / name, overrides + ["curriculum=[{alpha: 2, steps: 1}]"])
    result = train(cfg, log=lambda *_: None)
    assert len(result.losses) == 1 and math.isfinite(result.losses[0]) and result.losses[0] > 0
    trained = SpeechLM.from_pretrained(out / "model")
    initial = tiny_model()
    changed = {n for n, p in trained.state_dict().items() if n in initial.state_dict() and not torch.equal(p, initial.state_dict()[n])}
    parts = {n.split(".")[0] for n in changed}
    if cfg.recipe == "ctc":
        assert parts == {"encoder"} and (out / "ctc_head.safetensors").is_file()
    if "projector" in cfg.train.trainable:
        assert "projector" in parts
    if "lora" in cfg.train.trainable or "llm" in cfg.train.trainable:
        assert "llm" in parts  # the LoRA update is merged into the LLM weights
        assert not any("lora" in n for n in trained.state_dict())
    press = cfg.press.name
    if press in ("hfq", "qformer", "sst"):
        assert press in trained.presses and press in trained.config.presses
        fresh = type(trained.presses[press])(**{"dim": trained.presses[press].dim, **trained.config.presses[press]})
        assert any(not torch.equal(a, b) for a, b in zip(trained.presses[press].state_dict().values(), fresh.state_dict().values()))
    if press == "sst":
        assert trained.config.presses["sst"]["ratio"] == 2


def test_ctc_through_the_llm_vocabulary_trains_the_projector_against_the_frozen_embeddings(corpus, frame_cache, tmp_path):
    """train.ctc_frames=llm: each projected audio token is scored by exp(log_scale) x its cosine with every row of
    the LLM's input embeddings (plus a learned blank row, the last id), CTC on the transcript's token ids; only the
    projector and the head (blank, scale) learn, the LLM's embeddings stay out of the head's state."""
    from safetensors import safe_open

    from speechpress.model.config import named_or_file_config
    from speechpress.model.speechlm import SpeechLM
    from speechpress.train.data import AudioStore
    from speechpress.train.recipes import build_objective

    out = tmp_path / "run"
    settings = dict(recipe="ctc", data={"slice_recordings": True},
                    train={"trainable": ["projector", "ctc_head"], "ctc_frames": "llm", "steps": 12, "lr": 1e-2,
                           "checkpoint_every": 12})
    cfg = load_config(data=base(corpus, out, frame_cache, **settings))
    fresh = SpeechLM.from_config(named_or_file_config("tiny"), seed=0)  # not helpers.tiny_model: shared, and this freezes it
    initial = {n: p.detach().clone() for n, p in fresh.state_dict().items()}
    objective = build_objective(cfg, fresh, AudioStore(), None)
    head, embeddings = objective.head, objective.model.llm.get_input_embeddings()
    assert set(head.state_dict()) == {"blank", "log_scale"} and not embeddings.weight.requires_grad
    assert head.blank_id == embeddings.weight.shape[0] == objective.loss_fn.blank
    x = torch.randn(5, embeddings.weight.shape[1])
    rows = torch.cat([embeddings.weight, head.blank[None]]).detach()
    unit = lambda t: t / t.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # noqa: E731  (a padding row is all zeros)
    expected = head.log_scale.exp() * unit(x) @ unit(rows).T
    assert torch.allclose(head(x), expected, atol=1e-4)
    tok = objective.model.tokenizer
    assert objective.targets("Tuesday, four.") == tok("Tuesday, four.", add_special_tokens=False)["input_ids"]

    result = train(cfg, log=lambda *_: None)
    assert sum(result.losses[-4:]) < sum(result.losses[:4])
    trained = SpeechLM.from_pretrained(out / "model").state_dict()
    assert {n.split(".")[0] for n, p in trained.items() if n in initial and not torch.equal(p, initial[n])} == {"projector"}
    with safe_open(str(out / "ctc_head.safetensors"), "pt") as f:
        assert set(f.keys()) == {"blank", "log_scale"} and f.metadata()["frames"] == "llm"
        head_run = {k: f.get_tensor(k) for k in f.keys()}
    # The last checkpoint exports to the same model, its head beside the model's files (an export once wrote the
    # head first and then refused its own, no longer empty, folder).
    from speechpress.train.loop import export_checkpoint

    exported = export_checkpoint(cfg, out / "checkpoints" / "step-0000012", tmp_path / "exported")
    again = SpeechLM.from_pretrained(exported).state_dict()
    assert again.keys() == trained.keys() and all(torch.equal(again[k], trained[k]) for k in trained)
    with safe_open(str(tmp_path / "exported" / "ctc_head.safetensors"), "pt") as f:
        assert all(torch.equal(f.get_tensor(k), v) for k, v in head_run.items())
    with pytest.raises(ConfigError, match="add projector"):
        load_config(data=base(corpus, tmp_path / "b", frame_cache, recipe="ctc",
                              train={"trainable": ["ctc_head"], "ctc_frames": "llm"}))


def test_the_curriculum_runs_low_to_high_stage_by_stage(corpus, tmp_path):
    ok = base(corpus, tmp_path / "out", tmp_path / "cache", recipe="sst", press={"name": "sst"})
    ok["train"].pop("steps")
    stages = [{"alpha": 2, "steps": 3}, {"alpha": 4, "steps": 2}, {"alpha": [4, 8], "steps": 2}, {"alpha": 8, "steps": 1}]
    cfg = load_config(data={**ok, "curriculum": stages})
    assert cfg.train.steps == 8
    assert [cfg.alpha_at(step) for step in range(9)] == [2, 2, 2, 4, 4, [4, 8], [4, 8], 8, 8]
    with pytest.raises(ConfigError, match="low to high"):
        load_config(data={**ok, "curriculum": [{"alpha": 4, "steps": 1}, {"alpha": 2, "steps": 1}]})
    with pytest.raises(ConfigError, match="low to high"):
        load_config(data={**ok, "curriculum": [{"alpha": [2, 8], "steps": 1}, {"alpha": 4, "steps": 1}]})


def test_uncompressed_steps_train_the_plain_path_and_equal_the_qa_objective(corpus, frame_cache, tmp_path):
    """train.uncompressed_every: N makes every N-th step a plain one; its loss is exactly the qa recipe's on the
    same batch (the path inference takes with no press), the other steps go through SST."""
    from speechpress.model.speechlm import SpeechLM
    from speechpress.train.data import AudioStore, load_training_set
    from speechpress.train.recipes import build_objective
    from speechpress.encoder_cache import FrameCache

    from helpers import tiny_model

    ok = base(corpus, tmp_path / "out", frame_cache, recipe="sst", press={"name": "sst"}, lora=None,
              train={"trainable": ["press", "llm"], "uncompressed_every": 3})
    ok["train"].pop("steps")
    cfg = load_config(data={**ok, "curriculum": [{"alpha": 2, "steps": 6}]})
    assert [cfg.sst_at(s) for s in range(6)] == [True, True, False, True, True, False]
    examples = load_training_set(cfg.data).examples[:2]
    cache = FrameCache(frame_cache, "x")
    sst = build_objective(cfg, tiny_model(), AudioStore(), cache)
    qa_cfg = load_config(data=base(corpus, tmp_path / "qa", frame_cache, recipe="qa", train={"trainable": ["llm"]}))
    qa = build_objective(qa_cfg, tiny_model(), AudioStore(), cache)
    plain, compressed = sst.prepare(examples, 2), sst.prepare(examples, 1)
    assert plain["alpha"] is None and compressed["alpha"] == 2
    with torch.no_grad():
        assert float(sst(plain)) == pytest.approx(float(qa(qa.prepare(examples, 2))), rel=1e-6)
        assert float(sst(compressed)) != float(sst(plain))  # another path (a random tiny model barely reads audio)
    with pytest.raises(ConfigError, match="uncompressed_every"):
        load_config(data={**ok, "train": {**ok["train"], "uncompressed_every": 1}, "curriculum": [{"alpha": 2, "steps": 2}]})
    with pytest.raises(ConfigError, match="read by the sst recipe only"):
        load_config(data=base(corpus, tmp_path / "a", frame_cache, train={"uncompressed_every": 2}))
    train(load_config(data={**ok, "curriculum": [{"alpha": 2, "steps": 3}]}), log=lambda *_: None)
    assert [r["alpha"] for r in log_rows(tmp_path / "out")] == [2, 2, "uncompressed"]


def test_a_checkpoint_exports_to_the_model_the_finished_run_saves(corpus, frame_cache, tmp_path, capsys):
    """`speechpress train CFG --export CKPT DIR`: the last checkpoint gives exactly the run's final model (LoRA
    merged), an earlier one another model; a bad checkpoint is one error line."""
    from speechpress.cli import main
    from speechpress.model.speechlm import SpeechLM

    out = tmp_path / "run"
    cfg = base(corpus, out, frame_cache, recipe="lora", press={"name": "avgpool", "ratio": 4}, lora={"r": 4},
               train={"steps": 2, "checkpoint_every": 1, "trainable": ["projector", "lora"]})
    cfg_file = tmp_path / "cfg.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump(cfg))
    train(load_config(cfg_file), log=lambda *_: None)
    final = SpeechLM.from_pretrained(out / "model").state_dict()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", str(cfg_file), "--export", str(out / "checkpoints" / "step-0000002"), str(tmp_path / "two")]) == 0
    # peft's deprecation notice from transformers (on every LoRA wrap) is not the user's to act on
    assert not [w for w in caught if "deprecated" in str(w.message)], [str(w.message)[:100] for w in caught]
    exported = SpeechLM.from_pretrained(tmp_path / "two").state_dict()
    assert final.keys() == exported.keys() and all(torch.equal(final[k], exported[k]) for k in final)
    assert main(["train", str(cfg_file), "--export", str(out / "checkpoints" / "step-0000001"), str(tmp_path / "one")]) == 0
    earlier = SpeechLM.from_pretrained(tmp_path / "one").state_dict()
    assert any(not torch.equal(final[k], earlier[k]) for k in final)
    capsys.readouterr()
    assert main(["train", str(cfg_file), "--export", str(tmp_path), str(tmp_path / "three")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a training checkpoint" in err and not (tmp_path / "three").exists()


def test_a_stage_with_a_set_of_alphas_draws_one_per_interval_reproducibly():
    """The paper's alpha_i: each interval's ratio drawn from the stage's set, the same draw on a resumed run."""
    from speechpress.presses.summary_tokens import SummaryTokenPress
    from speechpress.train.objectives import interval_alphas

    press = SummaryTokenPress(ratio=2, dim=8, interval_tokens=16)
    schedule = interval_alphas([2, 4, 8], seed=0, step=5)
    alphas = press.layout(16 * 40, schedule).alphas
    assert set(alphas) == {2, 4, 8} and alphas == press.layout(16 * 40, interval_alphas([2, 4, 8], 0, 5)).alphas
    assert alphas != press.layout(16 * 40, interval_alphas([2, 4, 8], 0, 6)).alphas  # another step, another draw
    assert press.sst_count(16 * 40, schedule) == sum(16 // a for a in alphas)
    assert interval_alphas(4, 0, 5) == 4


# ------------------------------------------------------------------------------------------- bad input


def test_bad_configs_fail_before_training(corpus, tmp_path):
    ok = base(corpus, tmp_path / "out", tmp_path / "cache")
    with pytest.raises(ConfigError, match="unknown config key.*train.stesp"):
        load_config(data={**ok, "train": {"stesp": 3}})
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        load_config(data=ok, overrides=["train.steps=ten"])
    with pytest.raises(ConfigError, match="recipe must be one of"):
        load_config(data={**ok, "recipe": "phase9"})
    with pytest.raises(ConfigError, match="curriculum is for the sst recipe"):
        load_config(data={**ok, "curriculum": [{"alpha": 2, "steps": 1}]})
    with pytest.raises(DataError, match="training manifest not found"):
        train(load_config(data={**ok, "data": {"train": [str(tmp_path / "nope.jsonl")]}}))
    with pytest.raises(DataError, match="empty training set"):
        train(load_config(data={**ok, "data": {"train": [str(corpus)], "tasks": ["translation"]}}))
    assert not (tmp_path / "out").exists()  # nothing was started or written


def test_cli_errors_are_one_line_exit_2(corpus, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"recipe: asr\noutput_dir: {tmp_path / 'out'}\ndata: {{train: [{corpus}]}}\ntrain: {{lr: fast}}\n")
    proc = subprocess.run([sys.executable, "-m", "speechpress", "train", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: train.lr: expected a number, got str 'fast'"]
    from speechpress.cli import main

    for args, message in [([str(cfg), "train.lr=1e-3", "data.train=[missing.jsonl]"], "missing.jsonl: training manifest not found"),
                          ([str(tmp_path / "none.yaml")], "none.yaml: no such config file"),
                          ([str(cfg), "train.lr=1e-3", "train.trainable=[brain]"], "unknown part(s) brain")]:
        assert main(["train", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_without_resume(corpus, frame_cache, tmp_path):
    out = tmp_path / "run"
    cfg = base(corpus, out, frame_cache, train={"steps": 1})
    train(load_config(data=cfg), log=lambda *_: None)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(load_config(data={**cfg, "resume": False}))
    shutil.rmtree(out / "checkpoints")
    with pytest.raises(ConfigError, match="model already exists"):
        train(load_config(data=cfg))


def test_pack_utterances_joins_consecutive_utterances_up_to_the_limit():
    from speechpress.train.data import pack_utterances

    spans = [(0.5, 4.0, "a b"), (4.3, 9.0, "c"), (9.2, 31.0, "d e"), (31.5, 33.0, "f")]
    assert pack_utterances(spans, None) == spans
    assert pack_utterances(spans, 10.0) == [(0.5, 9.0, "a b c"), (9.2, 31.0, "d e"), (31.5, 33.0, "f")]
    assert pack_utterances(spans, 30.0) == [(0.5, 9.0, "a b c"), (9.2, 33.0, "d e f")]


def test_slice_recordings_cuts_clips_from_one_encoding_per_recording(corpus, tmp_path):
    """data.slice_recordings: each recording is encoded once, in inference's 30 s windows, and an utterance
    clip gets exactly the tokens of that encoding whose span middles fall inside it, with clip-relative spans."""
    from speechpress.model.config import named_or_file_config
    from speechpress.model.speechlm import SpeechLM
    from speechpress.train.config import DataSection
    from speechpress.encoder_cache import FrameCache
    from speechpress.train.data import AudioStore, load_training_set
    from speechpress.train.frontend import AudioFrontend

    model = SpeechLM.from_config(named_or_file_config("tiny"), seed=0).eval()
    examples = load_training_set(DataSection(train=[str(corpus)], utterances=True, max_duration=12.0)).examples
    recordings = {ex.audio for ex in examples}
    cache = FrameCache(tmp_path, "fp")
    frontend = AudioFrontend(model, AudioStore(), cache, slice_recordings=True)
    rows = frontend.frozen_tokens(examples)
    assert cache.misses == len(recordings) and cache.hits == len(examples) - len(recordings)
    rate = model.config.tokens_per_second
    for ex, (frames, spans) in zip(examples, rows):
        whole = model.encode(frontend.store.recording(ex.audio))
        middle = whole.spans[0].mean(dim=1)
        inside = (middle >= ex.offset) & (middle < ex.offset + ex.duration)
        assert torch.equal(frames, whole.embeddings[0][inside].float())
        assert abs(frames.shape[0] - ex.duration * rate) <= 1.0
        assert spans.min() >= -1 / rate and spans.max() <= ex.duration + 1 / rate
    # A fresh frontend reads the same tokens back from the disk cache without encoding anything.
    again = AudioFrontend(model, AudioStore(), FrameCache(tmp_path, "fp"), slice_recordings=True)
    first = again.frozen_tokens(examples[:3])
    assert again.cache.misses == 0 and all(torch.equal(a[0], b[0]) for a, b in zip(first, rows[:3]))
    short = examples[0].__class__(**{**examples[0].__dict__, "duration": 0.001})
    with pytest.raises(ConfigError, match="holds no audio token"):
        frontend.recording_slice(short)


def test_alone_fraction_encodes_the_hashed_share_of_clips_alone_and_slices_the_rest(corpus, tmp_path):
    """data.alone_fraction: the clips a hash picks get exactly the tokens of the clip encoded alone (what
    transcribe and eval's utterance rows see), the others exactly their slice; 0 and 1 are the two pure modes."""
    from speechpress.model.config import named_or_file_config
    from speechpress.model.speechlm import SpeechLM
    from speechpress.train.config import DataSection
    from speechpress.train.data import AudioStore, load_training_set
    from speechpress.train.frontend import AudioFrontend

    model = SpeechLM.from_config(named_or_file_config("tiny"), seed=0).eval()
    # The utterance clips (a whole-recording row is the same either way).
    examples = [ex for ex in load_training_set(DataSection(train=[str(corpus)], utterances=True, max_duration=12.0)).examples
                if ex.task == "asr_short" and ex.duration < 11.0][:12]
    reference = AudioFrontend(model, AudioStore(), None)
    with torch.no_grad():  # each mode computed directly: the slice, and the clip's own window
        sliced = [reference.recording_slice(ex) for ex in examples]
        alone = [reference.encode(reference.windows([ex]))[0] for ex in examples]
    assert not any(torch.equal(a[0], b[0]) for a, b in zip(sliced, alone) if a[0].shape == b[0].shape)  # they differ
    half = AudioFrontend(model, AudioStore(), None, slice_recordings=True, alone_fraction=0.5)
    picked = [half.encoded_alone(ex) for ex in examples]
    assert len(examples) >= 6 and 2 <= sum(picked) <= len(picked) - 2
    for ex, got, s, a, is_alone in zip(examples, half.frozen_tokens(examples), sliced, alone, picked):
        want = a if is_alone else s
        assert got[0].shape == want[0].shape and torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), ex.id
    # The choice is a function of the clip alone: another frontend (a resumed run, another process) agrees.
    again = AudioFrontend(model, AudioStore(), None, slice_recordings=True, alone_fraction=0.5)
    assert [again.encoded_alone(ex) for ex in reversed(examples)] == picked[::-1]
    assert not any(AudioFrontend(model, AudioStore(), None, True, 0.0).encoded_alone(ex) for ex in examples)
    assert all(AudioFrontend(model, AudioStore(), None, True, 1.0).encoded_alone(ex) for ex in examples)
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_config(data=base(corpus, tmp_path / "a", cache, data={"slice_recordings": True, "alone_fraction": 1.5}))
    with pytest.raises(ConfigError, match="with data.slice_recordings only"):
        load_config(data=base(corpus, tmp_path / "b", cache, data={"alone_fraction": 0.5}))


def test_utterances_keep_every_question_row_whatever_the_manifest_order(corpus, tmp_path):
    """With data.utterances, asr_short rows become the utterance clips and every other row stays, even the first
    row of a recording (an earlier version dropped it)."""
    from speechpress.train.config import DataSection
    from speechpress.train.data import load_training_set

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    for r in rows:
        r["audio"] = str(corpus.parent / r["audio"])
    reordered = tmp_path / "reordered.jsonl"
    reordered.write_text("".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: r["task"] == "asr_short")))
    for manifest in (corpus, reordered):
        examples = load_training_set(DataSection(train=[str(manifest)], utterances=True, max_duration=12.0)).examples
        ids = {e.id for e in examples if not e.id.split("-")[-1].startswith("u")}
        assert ids == {r["id"] for r in rows if r["task"] != "asr_short" and r["duration"] <= 12.0}
        assert sum(e.task == "asr_short" for e in examples) >= sum(r["task"] == "asr_short" for r in rows)


@pytest.mark.parametrize("override,key", [("train.lr=.nan", "train.lr"), ("train.lr=.inf", "train.lr"),
                                          ("train.max_grad_norm=-.inf", "train.max_grad_norm"),
                                          ("data.pack_seconds=nan", "data.pack_seconds"),
                                          ("press.options={interval_tokens: .nan}", "press.options.interval_tokens")])
def test_non_finite_numbers_are_refused_anywhere_in_the_config(override, key, tmp_path):
    ok = base(tmp_path / "corpus.jsonl", tmp_path / "out", tmp_path / "cache")
    with pytest.raises(ConfigError, match=f"{key}: expected a finite number"):
        load_config(data=ok, overrides=[override])
