"""`speechpress report`: a markdown table and plots from a folder of eval runs (and profile JSON).

* ``report.md``: one line per run (benchmark, model, press, nominal and measured compression, each overall
  metric, cost columns).
* ``accuracy_vs_compression.png``: each overall metric against the measured compression factor, one line per
  press family and model, the uncompressed run as a dashed baseline (Speech-XL Fig. 5 style); error bars are the
  bootstrap 95% intervals over rows (``metrics.bootstrap_interval``).
* ``accuracy_vs_kv.png``: the same against the KV cache per minute of audio (:func:`kv_mib_per_minute`), so
  token presses and KV-cache presses are compared at equal bytes.
* ``timeline_<benchmark>.png``: for a few questions whose answer lies in known seconds, one lane per run with
  the seconds whose tokens entered the LLM and the answer's seconds shaded (:func:`plot_timelines`).
* ``cost_vs_duration.png``: KV cache / peak memory and prefill FLOPs against recording length (Fig. 4 style),
  from ``speechpress profile --json`` files (analytic, and measured rows when ``--measure`` was given) and from
  the eval runs' own rows (one point per prefill).

Every file is written atomically (matplotlib's Agg backend renders into a temporary file that is renamed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from speechpress.errors import DataError
from speechpress.io import atomic_path, atomic_write_text

MiB = 2**20


def load_runs(root: Path) -> list[dict]:
    """Every finished run under ``root``: its metrics.json, with the per-prefill rows of its predictions."""
    from speechpress.evaluate.rows import METRICS, PREDICTIONS, read_rows
    from speechpress.evaluate.scoring import score_rows

    runs = []
    for path in sorted(root.rglob(METRICS)):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: unreadable metrics file ({err})") from None
        if not isinstance(doc, dict) or "metrics" not in doc or "press" not in doc:
            continue  # some other tool's metrics.json
        rows, _ = read_rows(path.parent / PREDICTIONS)
        if rows and any("ci95" not in v.get("pooled", {}) for v in doc["metrics"].get("overall", {}).values()):
            doc["metrics"] = score_rows(list(rows.values()))[0]  # a run scored before intervals were: score it again
        prefills = {}
        for row in rows.values():
            prefills.setdefault(row.get("prefill_id"), row)
        doc["_dir"] = str(path.parent.relative_to(root)) if path.parent != root else "."
        doc["_prefills"] = list(prefills.values())
        doc["_rows"] = list(rows.values())
        # Each prefill's kept spans, recorded on its first row only: looked up by the rows that shared it.
        doc["_kept"] = {r.get("prefill_id"): r["kept_spans"] for r in doc["_rows"] if r.get("kept_spans") is not None}
        runs.append(doc)
    return runs


def load_profile(path: Path) -> list[dict]:
    """Rows of a ``speechpress profile --json`` file: [{minutes, uncompressed, compressed[, measured]}]."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable profile JSON file ({err})") from None
    if not isinstance(doc, list) or not all(isinstance(r, dict) and "minutes" in r and "compressed" in r for r in doc):
        raise DataError(f"{path}: not the output of `speechpress profile --json` (a list of rows with minutes)")
    return doc


def _scores(run: dict) -> dict[str, float]:
    return {m: v["pooled"]["score"] for m, v in run.get("metrics", {}).get("overall", {}).items()}


def _intervals(run: dict) -> dict[str, list | None]:
    return {m: v["pooled"].get("ci95") for m, v in run.get("metrics", {}).get("overall", {}).items()}


def _fmt_score(score, interval) -> str:
    """A score with its bootstrap 95% interval: ``0.417 [0.362, 0.478]``."""
    if score is None:
        return "–"
    return _fmt(score, digits=3) + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _fmt(value, scale=1.0, digits=2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value / scale:.{digits}f}"


def markdown(runs: list[dict], profiles: dict[str, list] | None = None) -> str:
    from speechpress.evaluate.metrics import HIGHER_IS_BETTER

    metric_names = sorted({m for r in runs for m in _scores(r)})
    head = ["benchmark", "model", "press", "k nominal", "k measured", "rows"]
    head += [f"{m} {'↑' if HIGHER_IS_BETTER.get(m, True) else '↓'}" for m in metric_names]
    head += ["audio tok/s", "KV MiB", "peak MiB", "prefill s", "decode ms/tok", "prefill GFLOPs", "counted / analytic"]
    lines = [
        "# speechpress evaluation report",
        "",
        f"{len(runs)} run(s). Scores are pooled over every row of the tasks that use the metric (`metrics.json` also "
        "holds per-task and macro figures), with the 95% bootstrap interval over rows in brackets. k = audio tokens out of the encoder / audio entries the LLM keeps. Cost "
        "columns are means per prefill; peak memory is the run's maximum (CUDA max allocated, or the process' peak "
        "RSS on CPU, which never goes down within a process). Prefill GFLOPs are analytic (`speechpress.cost_model`, dense "
        "attention); counted / analytic compares FlopCounterMode with them on the prefills that were counted.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]

    for r in sorted(runs, key=_run_order):
        c, s = r.get("cost", {}), _scores(r)
        cells = [r.get("benchmark", ""), r.get("model", ""), f"`{r.get('press', '')}`",
                 _fmt(r.get("nominal_ratio"), digits=2), _fmt(c.get("compression_factor")),
                 f"{r.get('rows', 0)}/{r.get('benchmark_rows', 0)}"]
        cells += [_fmt_score(s.get(m), _intervals(r).get(m)) for m in metric_names]
        cells += [_fmt(c.get("audio_tokens_per_second")), _fmt(c.get("kv_bytes_mean"), MiB, 3), _fmt(c.get("peak_memory_bytes"), MiB, 0),
                  _fmt(c.get("prefill_seconds_mean"), digits=3), _fmt(c.get("decode_seconds_per_token"), 1e-3, 1),
                  _fmt(c.get("prefill_flops_analytic_mean"), 1e9, 2), _fmt(c.get("flops_measured_over_analytic"), digits=3)]
        lines.append("| " + " | ".join(cells) + " |")
    if profiles:
        lines += ["", "## Profiles", ""]
        for name, rows in profiles.items():
            lines.append(f"* `{name}`: {len(rows)} duration(s), "
                         f"{'with' if any('measured' in r for r in rows) else 'without'} measured rows")
    lines += ["", "Plots: `accuracy_vs_compression.png` (each metric against k, one line per press), "
              "`accuracy_vs_kv.png` (the same against KV cache MiB per minute of audio), "
              "`cost_vs_duration.png` (KV cache, peak memory and prefill FLOPs against recording length).", ""]
    return "\n".join(lines)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def kv_mib_per_minute(run: dict) -> float | None:
    """The run's KV cache per minute of audio: each recording's cache (the mean over its prefills) summed over
    recordings, over their seconds. A recording counts once whether its questions share one prefill or each has
    its own (a query-aware press), so both kinds of press are charged for the same audio."""
    per_audio: dict = {}
    for r in run.get("_rows", []):
        if not r.get("prefill_shared") and r.get("kv_bytes") and r.get("duration"):
            per_audio.setdefault(r.get("audio_key", r.get("id")), (r["duration"], []))[1].append(r["kv_bytes"])
    seconds = sum(d for d, _ in per_audio.values())
    kv = sum(sum(v) / len(v) for _, v in per_audio.values())
    return kv / MiB / seconds * 60 if seconds else None


def plot_accuracy(runs: list[dict], path: Path, x: str = "compression") -> bool:
    """One panel per (benchmark, metric); a line per (model, press family) over the measured compression factor
    (``x="compression"``) or the KV cache per minute of audio (``x="kv"``: token and KV presses at equal bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechpress.evaluate.metrics import HIGHER_IS_BETTER

    panels = sorted({(r.get("benchmark", ""), m) for r in runs for m in _scores(r)})
    if not panels:
        return False
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, layout="constrained")
    for ax, (bench, metric) in zip(axes.flat, panels):
        lines: dict[tuple, list] = {}
        for r in runs:
            if r.get("benchmark") != bench or metric not in _scores(r):
                continue
            k = (r.get("cost", {}).get("compression_factor") or r.get("nominal_ratio") or 1.0) if x == "compression" \
                else kv_mib_per_minute(r)
            if k is None:
                continue
            score, ci = _scores(r)[metric], _intervals(r).get(metric) or (None, None)
            lines.setdefault((r.get("model", ""), r.get("press_family", "")), []).append((k, score, *ci))
        for (model, family), pts in sorted(lines.items()):
            pts.sort(key=lambda p: p[0])
            label = family if len({m for m, _ in lines}) == 1 else f"{model}: {family}"
            x, y = [p[0] for p in pts], [p[1] for p in pts]
            # The bootstrap 95% interval as an error bar (none for runs without one).
            err = [[max(p[1] - p[2], 0) if p[2] is not None else 0 for p in pts],
                   [max(p[3] - p[1], 0) if p[3] is not None else 0 for p in pts]]
            if family == "identity":
                ax.axhline(y[0], ls="--", color="black", lw=1, label=f"{label} (uncompressed)")
                ax.errorbar(x, y, yerr=err, fmt="D", color="black", capsize=2, lw=0.8)
            else:
                ax.errorbar(x, y, yerr=err, fmt="o-", label=label, capsize=2, lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("compression factor k (measured)" if x == "compression" else "KV cache, MiB per minute of audio")
        ax.set_ylabel(f"{metric} ({'higher' if HIGHER_IS_BETTER.get(metric, True) else 'lower'} is better)")
        ax.set_title(f"{bench}: {metric}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("accuracy against compression" if x == "compression" else "accuracy against KV cache bytes")
    _save(fig, path)
    plt.close(fig)
    return True


def plot_cost(runs: list[dict], profiles: dict[str, list], path: Path) -> bool:
    """Memory (KV cache, peak) and prefill FLOPs against minutes of audio, from profiles and eval prefills."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem: dict[str, list] = {}
    flops: dict[str, list] = {}
    for name, rows in profiles.items():
        for row in rows:
            m = row["minutes"]
            for side in ("uncompressed", "compressed"):
                rep = row[side]
                tag = f"{name}: {rep.get('chain', side)}"
                mem.setdefault(f"{tag} KV (analytic)", []).append((m, rep["kv_peak_bytes"]))
                mem.setdefault(f"{tag} peak (analytic)", []).append((m, rep["peak_bytes"]))
                flops.setdefault(f"{tag} (analytic)", []).append((m, rep["prefill_flops"]))
            for side, meas in (row.get("measured") or {}).items():
                tag = f"{name}: {meas.get('chain', side)}"
                mem.setdefault(f"{tag} KV (measured)", []).append((m, meas["kv_bytes"]))
                mem.setdefault(f"{tag} peak (measured)", []).append((m, meas["peak_bytes"]))
                if meas.get("prefill_flops") is not None:
                    flops.setdefault(f"{tag} (measured)", []).append((m, meas["prefill_flops"]))
    for r in runs:
        tag = f"{r.get('model', '')}: {r.get('press', '')}"
        for p in r.get("_prefills", []):
            m = p["duration"] / 60
            mem.setdefault(f"{tag} KV (eval)", []).append((m, p["kv_bytes"]))
            if p.get("prefill_flops_analytic") is not None:
                flops.setdefault(f"{tag} (eval, analytic)", []).append((m, p["prefill_flops_analytic"]))
            if p.get("prefill_flops_measured") is not None:
                flops.setdefault(f"{tag} (eval, counted)", []).append((m, p["prefill_flops_measured"]))
    if not mem and not flops:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, series, unit, scale in ((a1, mem, "GiB", 2**30), (a2, flops, "TFLOPs", 1e12)):
        for label, pts in sorted(series.items()):
            pts = sorted(set(pts))
            style = "none" if "counted" in label else ("--" if "analytic" in label else "-")
            ax.plot([p[0] for p in pts], [p[1] / scale for p in pts], ls=style, marker="x" if style == "none" else "o",
                    ms=5 if style == "none" else 3, label=label)
        ax.set_xlabel("recording length (minutes)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=6)
    a1.set_ylabel("memory (GiB)")
    a1.set_title("KV cache and peak memory", fontsize=9)
    a2.set_ylabel("prefill TFLOPs")
    a2.set_title("prefill FLOPs", fontsize=9)
    fig.suptitle("cost against recording length")
    _save(fig, path)
    plt.close(fig)
    return True


def _row_score(row: dict) -> str:
    """One row's own score as the timeline prints it: a tick or a cross for accuracies, the figure otherwise."""
    from speechpress.evaluate.metrics import get_metric

    if not row.get("score_metric"):
        return ""
    kw = {"choices": [row["choices"]]} if row.get("choices") else {}
    score = get_metric(row["score_metric"])([row["prediction"]], [row["reference"]], **kw)["score"]
    if row["score_metric"] in ("mc_accuracy", "numeric_accuracy"):
        return "right" if score == 1 else "wrong"
    return f"{row['score_metric']} {score:.2f}"


def timeline_questions(runs: list[dict], per_benchmark: int = 4) -> dict[str, list[str]]:
    """Per benchmark, the ids of the first questions that hold their answer in known seconds (a needle, a quoted
    utterance, ordered events) and that every run of that benchmark answered with its prefill's spans."""
    chosen: dict[str, list[str]] = {}
    for bench in sorted({r.get("benchmark", "") for r in runs}):
        bench_runs = [r for r in runs if r.get("benchmark", "") == bench]
        common = None
        for r in bench_runs:
            ids = {row["id"] for row in r.get("_rows", []) if row.get("evidence") and prefill_spans(r, row) is not None}
            common = ids if common is None else common & ids
        if not common:
            continue
        task = {row["id"]: row["task"] for row in bench_runs[0]["_rows"]}
        order = [i for i in task if i in common]
        # Needle questions first: one short stretch holds the answer, so what a press kept decides it.
        order.sort(key=lambda i: task[i] != "sir")
        chosen[bench] = order[:per_benchmark]
    return chosen


def prefill_spans(run: dict, row: dict) -> list | None:
    """The kept spans of the prefill a row was answered from (recorded on the prefill's first row)."""
    if row.get("kept_spans") is not None:
        return row["kept_spans"]
    return run.get("_kept", {}).get(row.get("prefill_id"))


def plot_timelines(runs: list[dict], out: Path, per_benchmark: int = 4) -> list[Path]:
    """``timeline_<benchmark>.png``: for a few questions, one lane per run with the seconds of audio whose tokens
    entered the LLM, the seconds that hold the answer shaded, and whether the run answered right: why a press wins
    or loses. Pooling and KV presses cover every second with fewer entries (their k says how many fewer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for bench, ids in timeline_questions(runs, per_benchmark).items():
        bench_runs = sorted((r for r in runs if r.get("benchmark", "") == bench), key=_run_order)
        models = {r.get("model", "") for r in bench_runs}
        fig, axes = plt.subplots(len(ids), 1, figsize=(11, 0.45 * len(bench_runs) * len(ids) + 1.2 * len(ids)),
                                 squeeze=False, layout="constrained")
        for ax, qid in zip(axes[:, 0], ids):
            labels = []
            for lane, r in enumerate(bench_runs):
                row = next(x for x in r["_rows"] if x["id"] == qid)
                spans = prefill_spans(r, row)
                ax.broken_barh([(a, b - a) for a, b in spans], (lane - 0.35, 0.7), color="tab:blue", lw=0)
                k = row.get("compression_factor") or 1.0
                name = row.get("press", r.get("press", ""))
                labels.append(f"{r.get('model', '') + ': ' if len(models) > 1 else ''}{name} (k={k:.1f})")
                note = f"{_row_score(row)}, {answer_seconds_kept(spans, row['evidence']):.0%} of the answer's seconds"
                ax.text(1.005, lane, note, transform=ax.get_yaxis_transform(), va="center", fontsize=7)
            for a, b in row["evidence"]:
                ax.axvspan(a, b, color="tab:red", alpha=0.25, lw=0)
            ax.set_yticks(range(len(bench_runs)), labels, fontsize=7)
            ax.set_ylim(len(bench_runs) - 0.5, -0.5)
            ax.set_xlim(0, row.get("duration") or max(b for _, b in spans))
            question = " ".join(str(row.get("question", "")).split("\n")[0].split())
            ax.set_title(f"{qid} ({row['task']}): {question[:90]}", fontsize=8, loc="left")
            ax.grid(axis="x", alpha=0.3)
        axes[-1, 0].set_xlabel("seconds of audio (blue: entered the LLM; red: holds the answer)")
        fig.suptitle(f"{bench}: which seconds each press kept", fontsize=10)
        path = out / f"timeline_{_safe(bench)}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def answer_seconds_kept(spans: list, evidence: list) -> float:
    """The share of the answer's seconds that kept spans cover (both lists of disjoint [start, end])."""
    total = sum(b - a for a, b in evidence)
    inside = sum(max(0.0, min(b, d) - max(a, c)) for a, b in spans for c, d in evidence)
    return inside / total if total > 0 else 0.0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "benchmark"


def _run_order(r: dict) -> tuple:
    """The uncompressed baseline first, then each press by compression."""
    family = r.get("press_family", "")
    return (r.get("benchmark", ""), r.get("model", ""), family != "identity", family,
            r.get("cost", {}).get("compression_factor") or 0)


def write_report(root: str | Path, out: str | Path | None = None, profiles=()) -> dict:
    """Write report.md and the plots into ``out`` (default: ``root``); returns the paths written."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such runs folder")
    out = Path(out) if out else root
    runs = load_runs(root)
    prof = {Path(p).stem: load_profile(Path(p)) for p in profiles}
    for p in sorted(root.glob("profile*.json")):
        prof.setdefault(p.stem, load_profile(p))
    if not runs and not prof:
        raise DataError(f"{root}: holds no finished eval run (metrics.json) and no profile JSON")
    written = {}
    text = markdown(runs, prof)
    if plot_accuracy(runs, out / "accuracy_vs_compression.png"):
        written["accuracy_plot"] = out / "accuracy_vs_compression.png"
    if plot_accuracy(runs, out / "accuracy_vs_kv.png", x="kv"):
        written["kv_plot"] = out / "accuracy_vs_kv.png"
    if plot_cost(runs, prof, out / "cost_vs_duration.png"):
        written["cost_plot"] = out / "cost_vs_duration.png"
    timelines = plot_timelines(runs, out)
    if timelines:
        written["timelines"] = timelines
        text += "\nTimelines (which seconds each press kept, the answer's seconds shaded): " + ", ".join(
            f"`{p.name}`" for p in timelines) + ".\n"
    atomic_write_text(out / "report.md", text)
    written["report"] = out / "report.md"
    written["runs"] = len(runs)
    return written
