"""Building a recipe's objective from a training config: its press chain, LoRA, and what is trainable.

The recipes themselves are named configs (``train/config.py``); their losses are in ``objectives.py``.
"""

from __future__ import annotations

from torch import nn

from speechpress.errors import ConfigError
from speechpress.encoder_cache import FrameCache
from speechpress.train.data import AudioStore
from speechpress.train.frontend import AudioFrontend
from speechpress.train.objectives import AnswerObjective, CTCObjective, Objective, SSTObjective


# ------------------------------------------------------------------------------------------------ setup


def training_chain(cfg, model) -> list:
    """The press chain of the config, built by the one chain builder. A trainable press is first created in
    ``model.presses`` (and its constructor settings in ``model.config.presses``) so that ``save_pretrained`` keeps
    it, or reused if the model has one; the chain then shares its weights."""
    from speechpress.presses import available_presses, parse_press_spec
    from speechpress.presses.chain import build_chain, new_press, split_press_options

    spec = cfg.press.name or "identity"
    parsed = parse_press_spec(spec, cfg.press.ratio, cfg.press.tokens_per_second)
    presses = available_presses()
    steps, untrained_options = [], {}
    options = split_press_options([name for name, _, _ in parsed], cfg.press.options)
    for (name, r, t), opts in zip(parsed, options):
        if name not in presses:
            raise ConfigError(f"press.name: unknown press {name!r}; available: {', '.join(presses)}")
        cls = presses[name]
        if cls.space == "kv" and cfg.curriculum and r is None and t is None:
            r = float(cfg.curriculum[-1].alpha)  # the press keeps the last stage's alpha as its default
        if cls.query_aware:
            raise ConfigError(f"press {name!r} reads the question; training through it is not supported")
        if cls.trainable:
            if name not in model.presses:
                settings = {k: v for k, v in (("ratio", r), ("tokens_per_second", t)) if v is not None}
                model.presses[name] = new_press(model.config, name, **settings, **opts).to(model.device)
                model.config.presses[name] = {**settings, **opts}
                if hasattr(model.presses[name], "init_from_token"):  # SSTs start at EOS, as Activation Beacon does
                    model.presses[name].init_from_token(model.llm, model.tokenizer.eos_token_id)
            if r is not None or t is not None:
                model.presses[name].ratio, model.presses[name].tokens_per_second = r, t
                model.config.presses[name].update({"ratio": r, "tokens_per_second": t})
                model.config.presses[name] = {k: v for k, v in model.config.presses[name].items() if v is not None}
        else:
            untrained_options.update(opts)  # a trained press took its options when it was created
        steps.append((name, r, t))
    chain = build_chain(model.config, steps, options=untrained_options, trained=model.presses, strict_options=False)
    kinds = [p.space for p in chain]
    if cfg.recipe == "sst" and kinds[-1:] != ["kv"]:
        raise ConfigError("the sst recipe needs the sst press last in the chain")
    if cfg.recipe != "sst" and "kv" in kinds:
        raise ConfigError(f"a KV-cache press (sst) is trained by the sst recipe, not {cfg.recipe}")
    if cfg.recipe == "press" and not any(p.trainable for p in chain):
        raise ConfigError(f"the press recipe needs a trainable press (hfq, qformer), got {spec!r}")
    return chain


def apply_lora(cfg, model) -> None:
    """Wrap the LLM with a peft LoRA adapter (model.llm becomes a PeftModel; merged back before saving)."""
    import warnings

    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, m in model.llm.named_modules() if isinstance(m, nn.Linear)}
    targets = [t for t in cfg.lora.target_modules if t in names]
    if not targets:
        raise ConfigError(f"lora.target_modules {cfg.lora.target_modules} match no Linear layer of the LLM (it has {sorted(names)})")
    lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=targets, bias="none")
    with warnings.catch_warnings():
        # peft (<= 0.21) asks transformers 5.23 a deprecated question (is_gradient_checkpointing) on every wrap;
        # the notice is theirs to fix and says nothing to a user training a model.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model.llm = get_peft_model(model.llm, lc)


def build_objective(cfg, model, store: AudioStore, cache: FrameCache | None) -> Objective:
    """The recipe's module with exactly the configured parts trainable (the rest frozen)."""
    wanted = set(cfg.train.trainable)
    # Remember which parameters the modules themselves keep frozen (e.g. Whisper's positional table).
    own_frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    if cfg.lora is not None:
        apply_lora(cfg, model)
    model.requires_grad_(False)
    train_encoder = "encoder" in wanted
    frontend = AudioFrontend(model, store, None if train_encoder else cache, cfg.data.slice_recordings and not train_encoder,
                             cfg.data.alone_fraction)
    if cfg.recipe == "ctc":
        objective: Objective = CTCObjective(model, frontend, cfg.train.ctc_frames, train_encoder)
    else:
        chain = training_chain(cfg, model)
        if cfg.recipe == "sst":
            objective = SSTObjective(model, frontend, chain, cfg.alpha_at, train_encoder, seed=cfg.seed, sst_at=cfg.sst_at)
        else:
            objective = AnswerObjective(model, frontend, chain, train_encoder)
    objective.requires_grad_(False)

    def enable(module: nn.Module) -> None:
        for p in module.parameters():
            if id(p) not in own_frozen:
                p.requires_grad_(True)

    if train_encoder:
        enable(model.encoder)
    if "projector" in wanted:
        enable(model.projector)
    if "llm" in wanted:
        enable(model.llm)
    if "press" in wanted and cfg.recipe != "ctc":
        for press in objective.chain:
            if press.trainable:
                enable(press)
    if "lora" in wanted:
        for name, p in model.llm.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    if "ctc_head" in wanted:
        enable(objective.head)
    if not any(p.requires_grad for p in objective.parameters()):
        raise ConfigError(f"train.trainable {sorted(wanted)} selects no parameter of this model and press chain")
    return objective
