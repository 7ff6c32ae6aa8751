"""report.md with tables and PNG charts (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

COLUMNS = ("n", "hit@1", "hit@3", "hit@5", "mrr@10", "answer_recall", "refusal_accuracy", "citation_precision",
           "latency_ms_p50", "latency_ms_p95")


def _fmt(v, key: str = "") -> str:
    if v is None:
        return "–"
    if key == "n" or isinstance(v, int):
        return str(v)
    return f"{v:.1f}" if "ms" in key else f"{v:.3f}"


def summary_table(summary: dict, label: str = "all") -> str:
    """Markdown table: the overall row, then per-language and per-kind rows."""
    lines = ["| slice | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]

    def row(name, s):
        lines.append(f"| {name} | " + " | ".join(_fmt(s.get(k), k) for k in COLUMNS) + " |")

    row(label, summary)
    for group in ("by_language", "by_language_pair", "by_kind"):
        for name, s in (summary.get(group) or {}).items():
            row(f"{group[3:].replace('_', ' ')}: {name}", s)
    return "\n".join(lines)


def _badness(r: dict) -> tuple:
    """Sort key, worst first: wrong refusal, then missed answer, then poor retrieval."""
    return (
        r.get("refusal_accuracy", 1.0) or 0.0,
        1.0 if r.get("answer_recall") is None else r["answer_recall"],
        1.0 if r.get("mrr@10") is None else r["mrr@10"],
        1.0 if r.get("citation_precision") is None else r["citation_precision"],
    )


def _cell(text, limit: int = 90) -> str:
    text = " ".join(str(text or "").split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rank(r: dict) -> str:
    if r.get("rank") is not None:
        return str(r["rank"])
    return "miss" if r.get("hit@1") is not None else "–"


def _grouped_bar_chart(groups: dict, keys: tuple, xlabels: list[str], title: str, path: Path,
                       height: float, ylabel: str | None = None) -> None:
    """One cluster of bars per group, one bar per metric key; None shows as "n/a"."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, height), dpi=110)
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        xs = [j + i * width for j in range(len(groups))]
        vals = [v.get(k) for v in groups.values()]
        bars = ax.bar(xs, [v or 0 for v in vals], width, label=k)
        ax.bar_label(bars, labels=["n/a" if v is None else f"{v:.2f}" for v in vals], fontsize=7, padding=1)
    ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(groups))])
    ax.set_xticklabels(xlabels)
    ax.set_ylim(0, 1.3)  # headroom for the legend above the bars
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper center", fontsize=8, ncols=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _chart_hits_by_language(summary: dict, path: Path) -> bool:
    langs = {k: v for k, v in (summary.get("by_language") or {}).items() if v.get("hit@1") is not None}
    if not langs:
        return False
    _grouped_bar_chart(langs, ("hit@1", "hit@3", "hit@5", "mrr@10"),
                       [f"{k}\n(n={v['counts']['hit@1']})" for k, v in langs.items()],
                       "Retrieval hits by question language", path, 3.6, "share of questions")
    return True


def _chart_latency(results: list[dict], summary: dict, path: Path) -> bool:
    import matplotlib.pyplot as plt

    lat = [r["latency_ms"] for r in results if r.get("latency_ms") is not None]
    if not lat:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.hist(lat, bins=min(30, max(5, len(lat) // 2)), color="#4c72b0")
    for key, style in (("latency_ms_p50", "--"), ("latency_ms_p95", ":")):
        if summary.get(key) is not None:
            ax.axvline(summary[key], color="black", linestyle=style, label=f"{key[11:]} = {summary[key]:.0f} ms")
    ax.set_xlabel("latency per question (ms)")
    ax.set_ylabel("questions")
    ax.set_title("Answer latency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _chart_by_kind(summary: dict, path: Path) -> bool:
    kinds = summary.get("by_kind") or {}
    if not kinds:
        return False
    _grouped_bar_chart(kinds, ("hit@5", "answer_recall", "refusal_accuracy", "citation_precision"),
                       [f"{k}\n(n={v['n']})" for k, v in kinds.items()],
                       "Quality by kind of question", path, 3.4)
    return True


def write_report(out_dir, summary: dict, results: list[dict], title: str = "ClusterQA evaluation",
                 worst: int = 10) -> Path:
    out_dir = Path(out_dir)
    charts = []
    try:
        import matplotlib
    except ImportError:  # charts need the eval extra (pip install 'clusterqa[eval]'); the tables do not
        matplotlib = None
    if matplotlib is not None:
        matplotlib.use("Agg")
        for name, file, draw in (("Hits by language", "hits_by_language.png",
                                  lambda p: _chart_hits_by_language(summary, p)),
                                 ("Quality by kind", "quality_by_kind.png", lambda p: _chart_by_kind(summary, p)),
                                 ("Latency", "latency_hist.png", lambda p: _chart_latency(results, summary, p))):
            if draw(out_dir / file):
                charts.append((name, file))

    cfg = summary.get("config") or {}
    md = [f"# {title}", "", "Configuration: " + ", ".join(f"`{k}={v}`" for k, v in cfg.items()), ""]
    if summary.get("errors"):
        md += [f"**{summary['errors']} question(s) failed with an error** (see results.jsonl, key `error`).", ""]
    md += ["## Figures", "", summary_table(summary), "",
           "Metric definitions: eval/README.md. `–` = the metric applies to none of those questions.", ""]
    for name, file in charts:
        md += [f"## {name}", "", f"![{name}]({file})", ""]
    md += [f"## Worst {min(worst, len(results))} questions", "",
           "| id | kind | question | answered | answer | rank | recall | retrieved (top 3) |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=_badness)[:worst]:
        retrieved = "<br>".join(f"`{cid}` {_cell(txt, 60)}" for cid, txt in zip(r.get("retrieved", [])[:3],
                                                                            r.get("retrieved_text", [])[:3]))
        md.append(f"| {r['id']} | {r.get('kind', '')} | {_cell(r['question'], 60)} | {r.get('answered')} | "
                  f"{_cell(r.get('answer') or r.get('error'), 90)} | {_rank(r)} | "
                  f"{_fmt(r.get('answer_recall'))} | {retrieved or '–'} |")
    path = out_dir / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path
