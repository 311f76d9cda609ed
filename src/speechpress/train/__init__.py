"""Training: the Speech-XL phases (ASR alignment, QA alignment, SST compression with a curriculum), a phase 0
encoder CTC alignment, trainable pre-LLM presses and LoRA recovery; see docs/train.md."""

from speechpress.train.config import RECIPES, TrainConfig, load_config
from speechpress.train.loop import TrainResult, train

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "load_config", "train"]
