import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The eval tests' tiny benchmark and model (eval_helpers), built once per module that uses them; modules that
# need another corpus or model define their own fixture of the same name.
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from eval_helpers import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from eval_helpers import make_model

    return make_model(tmp_path_factory.mktemp("models") / "tiny")
