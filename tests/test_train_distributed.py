"""Two CPU processes (torchrun, gloo) against one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from speechpress.train import load_config, train
from train_helpers import base, log_rows, make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("ddp-corpus"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_with_the_same_global_batch(corpus, tmp_path):
    cache = tmp_path / "cache"
    settings = {"train": {"steps": 3, "batch_size": 4, "trainable": ["projector", "llm"], "log_examples": True}}
    single = tmp_path / "single"
    train(load_config(data=base(corpus, single, cache, **settings)), log=lambda *_: None)

    double = tmp_path / "double"
    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(yaml.safe_dump(base(corpus, double, cache, **settings)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(  # a stuck rendezvous fails the test instead of hanging the suite
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         "-m", "speechpress", "train", str(cfg_file)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es) x 2 x 1 accumulation" in proc.stdout

    # the ranks saw different examples, and together exactly the single run's batch of each step
    r0, r1 = log_rows(double, "examples-rank0.jsonl"), log_rows(double, "examples-rank1.jsonl")
    one = log_rows(single, "examples-rank0.jsonl")
    for a, b, s in zip(r0, r1, one):
        assert a["step"] == b["step"] == s["step"]
        assert len(a["ids"]) == len(b["ids"]) == 2 and not set(a["ids"]) & set(b["ids"])
        assert sorted(a["ids"] + b["ids"]) == sorted(s["ids"])
    # same losses and same final weights, up to float reduction order
    assert [r["loss"] for r in log_rows(double)] == pytest.approx([r["loss"] for r in log_rows(single)], abs=2e-5)
    w1 = load_file(str(single / "model" / "model.safetensors"))
    w2 = load_file(str(double / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4
    # and training did move them: the comparison is not between two untouched models
    from helpers import tiny_model

    initial = tiny_model().state_dict()
    moved = max(float((w1[k] - initial[k]).abs().max()) for k in w1 if k.startswith(("projector", "llm")))
    assert moved > 1e-3
