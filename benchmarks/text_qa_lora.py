"""Can the model's LLM learn the question tasks from the gold transcript? A fresh LoRA adapter on the LLM alone
(no audio, no projector), trained on the question rows of the training manifests with the transcript in place of
the audio (``text_ceiling.transcript()``, the same user message and chat template as ``text_ceiling.py``), loss on
the answer tokens and the EOS token only; scored before and after training on the test (and validation) split's
question rows, greedy, with the project's own metrics exactly as ``text_ceiling.py`` scores them.

    python benchmarks/text_qa_lora.py [--model DIR] [--train corpus/train.jsonl corpus-30s/train.jsonl]
        [--steps 180] [--batch 4] [--lr 5e-4] [--out-dir runs/text-qa-lora] [--results results/...json]
        [--eval-long] [--resume]

Rows whose prompt + answer exceed ``--max-tokens`` (default 1,200: every 5 min transcript) are left out of
training and counted. Batches hold rows of one recording length (little padding); every ``--long-every``-th batch
is drawn from the longer (90 s) rows, so they are seen in a short run. Checkpoints (adapter, optimizer, step) every
``--ckpt-every`` steps; ``--resume`` continues from the latest one (the batch order is a function of the seed and
step). ``--eval-only [--adapter DIR] [--eval-long --sets test-5min]`` scores the base LLM (before) or a saved
adapter (after) and merges the scores into the results file. On CPU, forward and backward run under bf16 autocast
(``--bf16``, the default; LoRA weights and optimizer state stay fp32); evaluation too, before and after alike.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

from text_ceiling import transcript

SKIP_TASKS = ("asr_short", "asr_long", "summary")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def prompt_ids(example, tok, system_prompt) -> list[int]:
    """The prompt exactly as text_ceiling.py builds it (chat template, generation prompt added)."""
    user = f"Here is the transcript of a recording.\n\n{transcript(example)}\n\n{example.text_prompt()}"
    messages = [{"role": "user", "content": user}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]


def question_rows(path):
    from speechpress.data.loaders import load_manifest

    return [e for e in load_manifest(path) if e.task not in SKIP_TASKS]


def chance(examples) -> dict[str, float]:
    """Per task: mean 1/options for multiple choice; for numeric answers the most frequent gold answer's rate."""
    by_task = defaultdict(list)
    for e in examples:
        by_task[e.task].append(e)
    out = {}
    for t, rows in by_task.items():
        if all(e.choices for e in rows):
            out[t] = sum(1 / len(e.choices) for e in rows) / len(rows)
        else:
            out[t] = Counter(e.answer for e in rows).most_common(1)[0][1] / len(rows)
    return out


def evaluate(llm, tok, system_prompt, examples, max_new_tokens, bf16, label="") -> dict:
    import torch

    from speechpress.evaluate.metrics import get_metric
    from speechpress.evaluate.scoring import scoring_metric

    llm.eval()
    per_task = defaultdict(lambda: [0.0, 0])
    rows = []
    t0 = time.time()
    for e in examples:
        ids = prompt_ids(e, tok, system_prompt)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = llm.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                               max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
        text = tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()
        score = get_metric(scoring_metric(e))([text], [e.answer], choices=[e.choices])["score"]
        per_task[e.task][0] += score
        per_task[e.task][1] += 1
        rows.append({"id": e.id, "task": e.task, "reference": e.answer, "prediction": text, "score": score})
    ch = chance(examples)
    result = {"per_task": {t: {"accuracy": round(c / n, 3), "n": n, "chance": round(ch[t], 3)}
                           for t, (c, n) in sorted(per_task.items())},
              "accuracy_all": round(sum(r["score"] for r in rows) / max(1, len(rows)), 3),
              "n": len(rows), "seconds": round(time.time() - t0, 1), "predictions": rows}
    print(f"-- eval {label}: {len(rows)} rows, {result['seconds']:.0f} s, all {result['accuracy_all']:.3f}", flush=True)
    for t, v in result["per_task"].items():
        print(f"   {t:<22} {v['accuracy']:.2f} of {v['n']:<3} (chance {v['chance']:.2f})", flush=True)
    return result


def eval_sets(args) -> dict[str, list]:
    """name -> question rows. test-90s / validation-30s+90s always; the 5 min ones with --eval-long."""
    test = question_rows(args.test)
    val = question_rows(args.validation) if args.validation else []
    sets = {"test-90s": [e for e in test if round(e.duration) == 90]}
    if val:
        sets["validation-30s-90s"] = [e for e in val if round(e.duration) in (30, 90)]
    if args.eval_long:
        sets["test-5min"] = [e for e in test if round(e.duration) == 300]
        if val:
            sets["validation-5min"] = [e for e in val if round(e.duration) == 300]
    return sets


class Schedule:
    """Deterministic batches: rows grouped by recording length, batched within a group, each group reshuffled per
    pass (seeded by pass number); step s takes from the long group when (s + 1) % long_every == 0."""

    def __init__(self, rows: list[dict], batch: int, long_every: int, seed: int):
        self.batch, self.long_every, self.seed = batch, long_every, seed
        longest = max(r["duration"] for r in rows)
        self.groups = {"long": [r for r in rows if r["duration"] == longest],
                       "short": [r for r in rows if r["duration"] != longest]}
        if not self.groups["short"]:
            self.groups = {"long": rows, "short": rows}

    def _batches(self, group: str, epoch: int) -> list[list[dict]]:
        rows = list(self.groups[group])
        random.Random(f"{self.seed}-{group}-{epoch}").shuffle(rows)
        # within a pass: sort chunks of 16 batches by length to cut padding, keep the chunk order random
        out = []
        chunk = self.batch * 16
        for i in range(0, len(rows), chunk):
            part = sorted(rows[i:i + chunk], key=lambda r: len(r["ids"]))
            out += [part[j:j + self.batch] for j in range(0, len(part), self.batch)]
        random.Random(f"{self.seed}-{group}-{epoch}-order").shuffle(out)
        return out

    def batch_at(self, step: int) -> list[dict]:
        if self.long_every and (step + 1) % self.long_every == 0:
            group, k = "long", step // self.long_every
        else:
            group, k = "short", step - (step + 1) // self.long_every if self.long_every else step
        per_pass = len(self._batches(group, 0))
        return self._batches(group, k // per_pass)[k % per_pass]


def collate(batch: list[dict], pad_id: int):
    import torch

    width = max(len(r["ids"]) for r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, r in enumerate(batch):
        n = len(r["ids"])
        ids[i, :n] = torch.tensor(r["ids"])
        mask[i, :n] = 1
        labels[i, r["n_prompt"]:n] = torch.tensor(r["ids"][r["n_prompt"]:])
    return ids, mask, labels


def save_json(path: Path, obj) -> None:
    from speechpress.io import atomic_write_json

    atomic_write_json(path, obj)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/speechpress-smol/phase3/model")
    ap.add_argument("--train", nargs="+", default=["corpus/train.jsonl", "corpus-30s/train.jsonl"])
    ap.add_argument("--test", default="corpus/test.jsonl")
    ap.add_argument("--validation", default="corpus/validation.jsonl")
    ap.add_argument("--out-dir", default="runs/text-qa-lora")
    ap.add_argument("--results", default="results/speechpress-smol/text-qa-lora.json")
    ap.add_argument("--steps", type=int, default=180)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=1200, help="skip training rows longer than this")
    ap.add_argument("--long-every", type=int, default=4, help="every Nth batch from the longest recordings (0: off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--mid-eval-every", type=int, default=0, help="score the validation set every N steps (0: off)")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--eval-long", action="store_true", help="also score the 5 min recordings (long prompts)")
    ap.add_argument("--sets", nargs="+", default=None,
                    help="score only these sets (test-90s validation-30s-90s test-5min validation-5min)")
    ap.add_argument("--no-eval-before", action="store_true")
    ap.add_argument("--no-eval", action="store_true", help="train only (timing runs)")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--adapter", default=None, help="with --eval-only: a saved adapter dir (none: the base LLM)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false")
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file

    from speechpress.model.speechlm import SpeechLM
    from speechpress.train.state_files import load_state, save_state

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results)

    speech = SpeechLM.from_pretrained(args.model)
    tok, system_prompt = speech.tokenizer, speech.config.system_prompt
    llm = speech.llm.float()
    for p in llm.parameters():
        p.requires_grad_(False)
    sets = eval_sets(args)

    if args.sets:
        sets = {k: v for k, v in sets.items() if k in args.sets}
    if args.eval_only:
        # scores the base LLM ("before") or a saved adapter ("after"), and adds them to the results of a run
        model = PeftModel.from_pretrained(llm, args.adapter) if args.adapter else llm
        phase = "after" if args.adapter else "before"
        tag = Path(args.adapter).name if args.adapter else "base"
        state_path = out_dir / "results-state.json"
        for name, rows in sets.items():
            res = evaluate(model, tok, system_prompt, rows, args.max_new_tokens, args.bf16, f"{phase} {name}")
            res["adapter"] = args.adapter
            save_json(out_dir / f"eval-{tag}-{name}.json", res)
            for path, slim in ((state_path, False), (results_path, True)):
                if path.exists():
                    merged = json.loads(path.read_text())
                    merged.setdefault(phase, {})[name] = {k: v for k, v in res.items()
                                                          if not (slim and k == "predictions")}
                    save_json(path, merged)
        return

    lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(llm, lora)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    # ---- training rows
    rows, skipped = [], Counter()
    kept = Counter()
    for path in args.train:
        for e in question_rows(path):
            p = prompt_ids(e, tok, system_prompt)
            ids = p + tok(e.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            d = round(e.duration)
            if len(ids) > args.max_tokens:
                skipped[f"{d}s"] += 1
                continue
            kept[f"{d}s {e.task}"] += 1
            rows.append({"id": e.id, "task": e.task, "duration": d, "ids": ids, "n_prompt": len(p)})
    print(f"training rows: {len(rows)} kept, skipped over {args.max_tokens} tokens: {dict(skipped)}", flush=True)
    schedule = Schedule(rows, args.batch, args.long_every, args.seed)

    config = {k: v for k, v in vars(args).items()}
    config.update({"trainable_params": n_trainable, "targets": TARGETS, "optimizer": "AdamW",
                   "train_rows": len(rows), "train_rows_by_length_task": dict(sorted(kept.items())),
                   "skipped_over_max_tokens": dict(skipped),
                   "eval_sets": {k: len(v) for k, v in sets.items()}, "torch_threads": torch.get_num_threads()})
    state_path = out_dir / "results-state.json"
    results = json.loads(state_path.read_text()) if args.resume and state_path.exists() else {}
    results["config"] = config

    def publish():
        save_json(state_path, results)
        slim = json.loads(json.dumps(results))
        for phase in ("before", "after") + tuple(k for k in slim if k.startswith("mid")):
            for name, res in (slim.get(phase) or {}).items():
                if isinstance(res, dict):
                    res.pop("predictions", None)
        save_json(results_path, slim)

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                            weight_decay=args.weight_decay)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        if args.schedule == "constant":
            return args.lr
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    start = 0
    ckpt = out_dir / "checkpoint"
    if args.resume and (ckpt / "state.json").exists():
        st = json.loads((ckpt / "state.json").read_text())
        weights = load_file(str(ckpt / "adapter" / "adapter_model.safetensors"))
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(model, weights)
        opt.load_state_dict(load_state(ckpt, "optimizer"))  # safetensors + JSON: a checkpoint cannot run code
        torch.set_rng_state(load_state(ckpt, "rng"))
        start = st["step"]
        print(f"resumed at step {start}", flush=True)

    if not args.no_eval and not args.no_eval_before and "before" not in results:
        results["before"] = {}
        with model.disable_adapter():
            for name, ex in sets.items():
                results["before"][name] = evaluate(model, tok, system_prompt, ex, args.max_new_tokens, args.bf16,
                                                   f"before {name}")
                publish()

    log = open(out_dir / "train-log.jsonl", "a" if args.resume else "w")
    t_train = time.time()
    window, wtime = [], time.time()
    step_times = []
    for step in range(start, args.steps):
        model.train()
        batch = schedule.batch_at(step)
        ids, mask, labels = collate(batch, tok.pad_token_id or tok.eos_token_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        t0 = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        # answer + EOS tokens only: logits at t predict token t + 1
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.time() - t0
        step_times.append(dt)
        window.append(loss.item())
        rec = {"step": step + 1, "loss": round(loss.item(), 4), "lr": lr_at(step), "seconds": round(dt, 2),
               "tokens": int(mask.sum()), "width": ids.size(1), "tasks": [r["task"] for r in batch],
               "duration": batch[0]["duration"]}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            print(f"step {step + 1:>4}/{args.steps}  loss {sum(window) / len(window):.4f}  lr {lr_at(step):.2e}  "
                  f"{(time.time() - wtime) / len(window):.1f} s/step", flush=True)
            window, wtime = [], time.time()
        if (step + 1) % args.ckpt_every == 0 or step + 1 == args.steps:
            model.save_pretrained(ckpt / "adapter")
            model.save_pretrained(out_dir / f"adapter-step{step + 1}")
            save_state(opt.state_dict(), ckpt, "optimizer")
            save_state(torch.get_rng_state(), ckpt, "rng")
            save_json(ckpt / "state.json", {"step": step + 1, "steps": args.steps})
        if args.mid_eval_every and (step + 1) % args.mid_eval_every == 0 and step + 1 < args.steps \
                and "validation-30s-90s" in sets and not args.no_eval:
            results[f"mid-step{step + 1}"] = {"validation-30s-90s": evaluate(
                model, tok, system_prompt, sets["validation-30s-90s"], args.max_new_tokens, args.bf16,
                f"step {step + 1} validation-30s-90s")}
            publish()
    train_seconds = time.time() - t_train
    if step_times:
        results["training"] = {"steps": args.steps, "started_at_step": start, "train_seconds": round(train_seconds),
                               "seconds_per_step": round(sum(step_times) / len(step_times), 2)}
        print(f"trained {args.steps - start} steps in {train_seconds:.0f} s "
              f"({sum(step_times) / len(step_times):.1f} s/step)", flush=True)
    if not args.no_eval:
        results["after"] = {}
        for name, ex in sets.items():
            results["after"][name] = evaluate(model, tok, system_prompt, ex, args.max_new_tokens, args.bf16,
                                              f"after {name}")
            publish()
    publish()


if __name__ == "__main__":
    main()
