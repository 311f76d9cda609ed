"""The fidelity study's write-up (``scripts/fidelity_study.sh`` -> ``docs/results.md``): per recording length a
table of every run, what the sweep cost, and one line per paper claim, judged only by what was measured.

A claim is judged with paired bootstrap differences (:func:`metrics.paired_difference`) on the questions both
runs answered. It is *not testable* when the uncompressed model is not above chance on those questions (a press
cannot lose what was never heard), *not run* when the runs it needs are missing (a trained part this model lacks),
and otherwise *reproduced*, *partly* (the direction holds, the size does not) or *not*. Beside SpeechPrune's
accuracy, the share of the answer's seconds each pruner kept is compared too: whether it keeps the evidence is
measurable even where the model's answers are at chance."""

from __future__ import annotations

import datetime
from pathlib import Path

from speechpress.evaluate.metrics import bootstrap_interval, paired_difference, paired_mean_difference
from speechpress.evaluate.report import answer_seconds_kept, load_runs, prefill_spans
from speechpress.io import atomic_write_text

STAGES = ("study-90s", "study-5min", "study-20min")
SPEECHPRUNE_BUDGET = 750  # SpeechPrune's phase-1 tokens: its pruning rates are shares of these
TOKENS_PER_SECOND = 25
KEPT_WER_MARGIN = 0.05  # a press "keeps" transcription when its paired interval excludes a loss above this


def mc_rows(run: dict, tasks: set | None = None) -> list[dict]:
    return [r for r in run["_rows"] if r.get("score_metric") == "mc_accuracy" and (tasks is None or r["task"] in tasks)]


def chance(rows: list[dict]) -> float:
    return sum(1 / len(r["choices"]) for r in rows) / len(rows) if rows else 0.0


def accuracy(rows: list[dict]) -> tuple[float, list | None]:
    from speechpress.evaluate.metrics import mc_accuracy

    if not rows:
        return float("nan"), None
    score = mc_accuracy([r["prediction"] for r in rows], [r["reference"] for r in rows],
                        choices=[r["choices"] for r in rows])["score"]
    return score, bootstrap_interval("mc_accuracy", rows)


def pr_label(press: str, pr: float, seconds: float) -> str:
    """The run label of ``press`` keeping SpeechPrune's PR-``pr`` token count of a ``seconds`` recording."""
    return f"{press}-x{seconds * TOKENS_PER_SECOND / round((1 - pr) * SPEECHPRUNE_BUDGET):g}"


def _fmt(score: float, ci) -> str:
    return f"{score:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _diff(a: dict, b: dict, tasks: set | None = None) -> tuple[float, list | None, int]:
    rows_a, rows_b = mc_rows(a, tasks), mc_rows(b, tasks)
    diff, ci = paired_difference("mc_accuracy", rows_a, rows_b)
    return diff, ci, len(rows_a)


def _judge(diff: float, ci, paper: float | None) -> str:
    if ci is None:
        return "not testable (too few questions)"
    if ci[0] > 0:
        return "reproduced" if paper is None or diff >= paper / 2 else "partly (the direction holds, the size does not)"
    if ci[1] < 0:
        return "not (reversed)"
    return "not (no difference beyond noise)"


class Study:
    def __init__(self, runs: list[dict]):
        self.runs = runs
        self.by_stage: dict[str, dict[str, dict]] = {}
        for r in runs:
            self.by_stage.setdefault(r.get("benchmark", ""), {})[r.get("press", "")] = r

    def stage_seconds(self, stage: str) -> float:
        return {"study-90s": 90.0, "study-5min": 300.0, "study-20min": 1200.0}.get(stage, 0.0)

    def testable(self, stage: str) -> tuple[bool, str]:
        """Whether the uncompressed model is above chance on this stage's multiple-choice questions."""
        base = self.by_stage.get(stage, {}).get("identity")
        if base is None:
            return False, "no uncompressed run"
        rows = mc_rows(base)
        score, ci = accuracy(rows)
        c = chance(rows)
        if ci is None or ci[0] <= c:
            return False, f"uncompressed accuracy {_fmt(score, ci)} is not above chance ({c:.2f})"
        return True, f"uncompressed accuracy {_fmt(score, ci)}, chance {c:.2f}"

    def compare_wer(self, stage: str, a: str, b: str = "identity") -> dict | None:
        """Transcription under press ``a`` against ``b`` (by default the uncompressed model), by paired WER
        difference: the one task this model does, so whether a press keeps what the model hears is testable here."""
        runs = self.by_stage.get(stage, {})
        if a not in runs or b not in runs or "identity" not in runs:
            return None
        rows = {k: [r for r in runs[k]["_rows"] if r.get("score_metric") == "wer"] for k in (a, b, "identity")}
        if not rows["identity"]:
            return None
        diff, ci = paired_difference("wer", rows[a], rows[b])
        base = bootstrap_interval("wer", rows["identity"])
        if base is None or base[1] >= 1.0:
            verdict = "not testable: the uncompressed model does not transcribe these clips"
        elif ci is None:
            verdict = "not testable (too few clips)"
        elif b == "identity" and ci[0] > 0:
            verdict = "lost: WER higher beyond noise"
        elif b == "identity":
            # "Kept" only when the interval rules out more than a small loss; a wide one is reported as open.
            verdict = ("kept: no WER loss beyond noise" if ci[1] <= KEPT_WER_MARGIN else
                       f"unclear: no loss beyond noise, but the interval allows up to {ci[1]:+.2f} WER")
        elif ci[1] < 0:
            verdict = f"{a} transcribes better beyond noise"
        elif ci[0] > 0:
            verdict = f"{b} transcribes better beyond noise"
        else:
            verdict = "no WER difference beyond noise"
        return dict(stage=stage, a=a + " (WER)", b=b + " (WER)", n=len(rows[a]), unit="clips", diff=diff, ci=ci,
                    verdict=verdict)

    def compare_evidence(self, stage: str, a: str, b: str) -> dict | None:
        """The share of the answer's seconds (needle, quoted utterance, ordered events) whose tokens press ``a``
        kept, minus press ``b``'s, per question, paired. It asks whether a press keeps the evidence, which a model
        at chance cannot answer by its accuracy; a query-aware press still chooses through this model's
        representations, so it is a measure of the press on this model."""
        runs = self.by_stage.get(stage, {})
        if a not in runs or b not in runs:
            return None
        shares = []
        for label in (a, b):
            run = runs[label]
            spans = {r["id"]: (prefill_spans(run, r), r["evidence"]) for r in run["_rows"] if r.get("evidence")}
            shares.append({i: answer_seconds_kept(kept, ev) for i, (kept, ev) in spans.items() if kept is not None})
        ids = sorted(set(shares[0]) & set(shares[1]))
        if not ids:
            return None
        diff, ci = paired_mean_difference([shares[0][i] for i in ids], [shares[1][i] for i in ids])
        if ci is None:
            verdict = "not testable (too few questions)"
        elif ci[0] > 0:
            verdict = f"{a} keeps more of the answer's seconds beyond noise"
        elif ci[1] < 0:
            verdict = f"{a} keeps less of the answer's seconds beyond noise"
        else:
            verdict = "no difference in the answer's seconds kept beyond noise"
        mean_a = sum(shares[0][i] for i in ids) / len(ids)
        return dict(stage=stage, a=f"{a} (answer's seconds kept, {mean_a:.0%})", b=f"{b} ({mean_a - diff:.0%})",
                    n=len(ids), diff=diff, ci=ci, verdict=verdict)

    def compare(self, stage: str, a: str, b: str, paper: float | None, tasks: set | None = None) -> dict | None:
        runs = self.by_stage.get(stage, {})
        if a not in runs or b not in runs or not mc_rows(runs[a], tasks):
            return None
        diff, ci, n = _diff(runs[a], runs[b], tasks)
        ok, why = self.testable(stage)
        verdict = _judge(diff, ci, paper) if ok else f"not testable: {why}"
        return dict(stage=stage, a=a, b=b, n=n, diff=diff, ci=ci, verdict=verdict)

    # ------------------------------------------------------------------------------------------- claims
    def claims(self) -> list[dict]:
        out = []

        def line(claim, paper, results, gap=None):
            """``gap``: the part of the claim this study cannot measure with this model, if any."""
            out.append(dict(claim=claim, paper=paper, results=[r for r in results if r], gap=gap))

        res = []
        for stage in STAGES:
            s = self.stage_seconds(stage)
            for pr in (0.2, 0.4, 0.6, 0.8):
                res.append(self.compare(stage, pr_label("speechprune", pr, s), pr_label("random", pr, s),
                                        0.47 if pr == 0.2 else None))
            for k in (2, 4, 8, 16):
                res.append(self.compare(stage, f"speechprune-x{k}", f"random-x{k}", None))
            for pr in (0.2, 0.4, 0.6, 0.8):
                res.append(self.compare_evidence(stage, pr_label("speechprune", pr, s), pr_label("random", pr, s)))
            for k in (2, 4, 8, 16):
                res.append(self.compare_evidence(stage, f"speechprune-x{k}", f"random-x{k}"))
        line("SpeechPrune keeps far more than random pruning at the same rate", "+47 points at PR 0.2 on SPIRAL "
             "(Qwen2-Audio); above random at every rate", res)

        hfq = [p for st in self.by_stage.values() for p in st if p.startswith("hfq")]
        res = [self.compare(stage, p, other, None) for stage in STAGES for p in self.by_stage.get(stage, {})
               if p.startswith("hfq") for other in ("avgpool-1.67tps", "segment-1.67tps", "qformer-1.67tps")]
        line("HFQ-Former is competitive at 1.67 tokens/s", "FastSLM: near the uncompressed model at 1.67 tokens/s",
             res, None if hfq else "an HFQ-Former trained for this model (configs/train/hfq.yaml trains one for the tiny "
             "model; none is trained for speechpress-smol yet)")

        res = [self.compare(stage, f"{p}-x{k}", "identity", None) for stage in STAGES for p in ("avgpool", "segment")
               for k in (2, 4, 8)]
        res += [self.compare_wer(stage, f"{p}-x{k}") for stage in STAGES for p in ("avgpool", "segment") for k in (2, 4, 8)]
        lora = [p for st in self.by_stage.values() for p in st if "lora" in p]
        line("Pooling and segmentation with LoRA stay near the uncompressed model at about x3",
             "Bhati et al.: with LoRA near uncompressed at about x3; without it, a steep drop",
             res, None if lora else "runs of a model trained with LoRA under pooling (configs/train/avgpool-lora.yaml, "
             "segment-lora.yaml; not trained for speechpress-smol): only the without-LoRA side is measured")

        res = [self.compare(stage, f"sst-x{k}", "identity", None) for stage in STAGES for k in (2, 4, 8, 16)]
        res += [self.compare_wer(stage, f"sst-x{k}") for stage in STAGES for k in (2, 4, 8, 16)]
        line("SST's 2 -> 4 -> 8 curriculum makes high ratios work; 16 zero-shot is still usable",
             "Speech-XL: the curriculum beats training at 8 only; x16 unseen in training still usable", res,
             "a model trained with SST at 8 only, for the curriculum's side of the claim")

        kv_tok = [(stage, kv, tok) for stage in STAGES for kv in ("snapkv-x4", "knorm-x4", "tova-x4", "streamingllm-x4")
                  for tok in ("avgpool-x4", "speechprune-x4")]
        res = [self.compare(stage, kv, tok, None) for stage, kv, tok in kv_tok]
        res += [self.compare_wer(stage, kv, tok) for stage, kv, tok in kv_tok]
        res += [self.compare_wer(stage, kv) for stage, kv in dict.fromkeys((stage, kv) for stage, kv, _ in kv_tok)]
        line("KV-cache presses against token presses at equal cache bytes (x4)", "no paper claim: speechpress' "
             "own question", res)

        res = [self.compare(stage, best, "truncate", None) for stage in STAGES for best in ("identity", "avgpool-x4")]
        line("Long-form processing beats the first 30 s (the 'Original' floor)", "SpeechPrune: +29 points over "
             "Original at PR 0.2", res)
        return out

    # ------------------------------------------------------------------------------------------- tables
    def table(self, stage: str) -> list[str]:
        runs = self.by_stage.get(stage, {})
        if not runs:
            return []
        tasks = sorted({r["task"] for run in runs.values() for r in mc_rows(run)})
        # Tokens per second of audio and costs per whole recording, not means over prefills: a query-aware press
        # prefills once per question, so its mean weighs the long recordings more than one whose prefill is shared.
        head = ["press", "k", "audio tokens / s into the LLM", f"KV MiB per {stage.split('-')[-1]} recording",
                f"prefill GFLOPs per {stage.split('-')[-1]} recording", "s / question",
                "all multiple choice"] + tasks + ["transcription WER", "summary ROUGE-L"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def order(item):
            label, run = item
            return (label != "identity", label != "truncate", run.get("press_family", ""),
                    run.get("cost", {}).get("compression_factor") or 0)

        for label, run in sorted(runs.items(), key=order):
            c, rows = run.get("cost", {}), run["_rows"]
            seconds = sum((r.get("prefill_seconds") or 0) * (not r.get("prefill_shared")) + (r.get("decode_seconds") or 0)
                          for r in rows) / max(1, len(rows))
            cells = [f"`{label}`", f"{c.get('compression_factor') or 0:.2f}", f"{c.get('llm_audio_tokens_per_second') or 0:.2f}",
                     f"{self.per_recording(stage, run, 'kv_bytes') / 2**20:.2f}",
                     f"{self.per_recording(stage, run, 'prefill_flops_analytic') / 1e9:.0f}",
                     f"{seconds:.2f}", _fmt(*accuracy(mc_rows(run)))]
            cells += [_fmt(*accuracy(mc_rows(run, {t}))) for t in tasks]
            overall = run.get("metrics", {}).get("overall", {})
            cells += [_fmt(overall[m]["pooled"]["score"], overall[m]["pooled"].get("ci95")) if m in overall else "–"
                      for m in ("wer", "rouge_l")]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def per_recording(self, stage: str, run: dict, key: str) -> float:
        """Mean ``key`` over the prefills of the stage's full-length recordings (its short transcription clips
        left out); the run's mean over every prefill when it holds none."""
        full = 0.9 * self.stage_seconds(stage)
        values = [r[key] for r in run["_rows"] if not r.get("prefill_shared") and r.get(key) is not None
                  and (r.get("duration") or 0) >= full]
        return sum(values) / len(values) if values else run.get("cost", {}).get(f"{key}_mean") or 0.0

    def cost(self, stage: str) -> dict:
        """Where the stage's time went, in seconds: encoding (each recording once), compression + prefill, answers."""
        encode, seen, prefill, decode = 0.0, set(), 0.0, 0.0
        for run in self.by_stage.get(stage, {}).values():
            for r in run["_rows"]:
                decode += r.get("decode_seconds") or 0
                if r.get("prefill_shared"):
                    continue
                enc = r.get("encode_seconds") or 0
                prefill += (r.get("prefill_seconds") or 0) - enc
                if r.get("audio_key") not in seen:
                    seen.add(r.get("audio_key"))
                    encode += enc
        return dict(runs=len(self.by_stage.get(stage, {})), encode=encode, prefill=prefill, decode=decode,
                    total=encode + prefill + decode)


def markdown(runs: list[dict], model: str = "") -> str:
    study = Study(runs)
    lines = ["# Results: the papers' claims, measured", "",
             f"Written by `python scripts/fidelity_report.py` from the runs of `scripts/fidelity_study.sh` "
             f"({datetime.date.today().isoformat()}; model: {model or 'see the runs'}). Multiple-choice accuracy is scored by "
             "the options' likelihood; brackets are 95% bootstrap intervals over questions, differences are paired "
             "(the same questions resampled for both runs). Nothing here was tuned on these recordings (test-split "
             "seeds 9 and 19, never used in training).", ""]
    missing = [stage for stage in STAGES if not study.by_stage.get(stage)]
    found = ", ".join(f"{stage}: {len(study.by_stage[stage])}" for stage in STAGES if study.by_stage.get(stage))
    lines += [f"Finished runs: {found}. " + (f"Not run yet: {', '.join(missing)} (`STAGES=\"{' '.join(m.split('-')[1] for m in missing)}\" "
              "bash scripts/fidelity_study.sh`; a stage's runs not listed in its table have not finished either)."
              if missing else "A run missing from a table has not finished."), "", "## The claims", ""]
    for c in study.claims():
        lines.append(f"**{c['claim']}.** Paper: {c['paper']}.")
        lines.append("")
        if not c["results"] and not c["gap"]:
            lines.append("* not run: the study holds no runs for it.")
        for r in c["results"]:
            ci = f" [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]" if r["ci"] else ""
            lines.append(f"* {r['stage']}: `{r['a']}` - `{r['b']}` = {r['diff']:+.2f}{ci} on {r['n']} {r.get('unit', 'questions')}: "
                         f"**{r['verdict']}**")
        if c["gap"]:
            lines.append(f"* not measured: {c['gap']}.")
        lines.append("")
    for stage in STAGES:
        table = study.table(stage)
        if not table:
            continue
        ok, why = study.testable(stage)
        cost = study.cost(stage)
        lines += [f"## {stage}", "", f"Uncompressed: {why}.", "", *table, "",
                  f"Time, {cost['runs']} runs, as the runs recorded it (whatever else shared the machine included): "
                  f"{cost['total'] / 60:.1f} min = encoding "
                  f"{cost['encode'] / 60:.1f} (each recording once, cached) + compression and prefill "
                  f"{cost['prefill'] / 60:.1f} + answering {cost['decode'] / 60:.1f}.", ""]
    lines += ["Plots and timelines: `results/fidelity/accuracy_vs_compression.png`, `results/fidelity/accuracy_vs_kv.png` "
              "(token and KV presses at equal cache bytes), "
              "`results/fidelity/timeline_study-*.png` (which seconds each press kept, the answer's seconds shaded).", ""]
    return "\n".join(lines)


def write_results(root: str | Path, out: str | Path, model: str = "") -> Path:
    from speechpress.errors import DataError

    if not Path(root).is_dir():
        raise DataError(f"{root}: no such runs folder")
    runs = [r for r in load_runs(Path(root)) if r.get("benchmark") in STAGES]
    if not runs:
        raise DataError(f"{root}: holds no finished run of the study's benchmarks ({', '.join(STAGES)}); "
                        "scripts/fidelity_study.sh writes them")
    atomic_write_text(Path(out), markdown(runs, model))
    return Path(out)
