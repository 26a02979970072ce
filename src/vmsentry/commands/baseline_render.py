"""The text (and Markdown) of ``vmsentry baseline train|eval|show`` (commands/baseline.py): every name from
a file or a capture goes through ``printable``."""

from __future__ import annotations

import time

from vmsentry.model.text import printable


def render_train(r: dict) -> str:
    m = r["model"]
    lines = [
        f"model: {printable(m.get('scorer', '?'))} scorer, window {m['window']:g} s, {len(m['features'])} features",
        f"trained on {r['samples']:,} samples of {len(r['entities'])} entities in {r['seconds']:g} s"
        + (f" ({r['left_out']:,} labelled attack windows left out)" if r["left_out"] else ""),
    ]
    for t in r["trained_on"]:
        lines.append(
            f"  {printable(t['file'])}: {t['frames']:,} frames"
            + (f", sha256 {t['sha256'][:16]}" if t["sha256"] else "")
        )
    if r["fallback"]:
        lines.append(
            f"  {len(r['fallback'])} entities with fewer than {m['thresholds']['min_samples']} samples use their role's "
            f"or the network's profile: {printable(', '.join(r['fallback'][:10]))}{' ...' if len(r['fallback']) > 10 else ''}"
        )
    choice = m.get("choice") or {}
    lines.append(f"scorer: {printable(str(choice.get('scorer')))} ({printable(str(choice.get('reason', '')))})")
    cal = m.get("calibration")
    if cal:
        lines.append(
            f"calibration: {cal.get('method')} on {cal.get('samples', 0):,} samples ({cal.get('positives', 0)} attack), "
            f"ROC AUC {cal.get('auc', float('nan')):.3f}, in-sample ECE {cal.get('ece_in_sample', float('nan')):.3f}"
        )
    else:
        lines.append(
            "calibration: none: this model never alarms; `detect`/`watch --model` refuse it (train with --calibrate)"
        )
    bh = r["bh"]
    if not bh["can_alarm"]:
        lines.append(
            f"warning: the benign reference holds only {bh['reference']:,} scores (too few to extrapolate a tail), so no "
            f"p-value is below {bh['smallest_p_value']:.2g}; with {bh['entities_per_window']} entities per window, "
            f"Benjamini-Hochberg at q={m['thresholds']['bh_q']:g} cannot reject a lone anomaly: "
            "train on more traffic for single alarms"
        )
    return "\n".join(lines) + "\n"


EVAL_COLUMNS = (
    ("kind", "kind"),
    ("samples", "samples"),
    ("incidents", "incidents"),
    ("roc_auc", "ROC AUC"),
    ("detection_rate_at_1pct_fa", "detected @1% FA/VM-h"),
    ("incidents_alarmed", "alarmed >= 0.8"),
    ("precision", "precision >= 0.8"),
    ("ece", "ECE"),
    ("median_time_to_detect_s", "time to detect (s)"),
)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return printable(str(value))


def render_eval(table: dict, markdown: bool = False) -> str:
    rows = [[_cell(row.get(key)) for key, _ in EVAL_COLUMNS] for row in table["rows"]]
    heads = [title for _, title in EVAL_COLUMNS]
    benign = table["benign"]
    per_day = benign["false_alarms_per_vm_day"]
    foot = (
        f"benign: {benign['samples']:,} samples, {benign['vm_hours']:.2f} VM-hours, {benign['false_alarms']} false "
        f"alarm(s) at >= 0.8 ({'-' if per_day is None else f'{per_day:.2f}'} per VM-day)"
    )
    model = table["model"]
    head = f"model {printable(model['file'])} ({model['scorer']}{'' if model['calibrated'] else ', not calibrated'})"
    if markdown:
        esc = lambda s: s.replace("|", "\\|")
        lines = [
            f"**{esc(head)}**",
            "",
            "| " + " | ".join(heads) + " |",
            "|" + "---|" * len(heads),
            *("| " + " | ".join(esc(c) for c in row) + " |" for row in rows),
            "",
            esc(foot),
        ]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([head, fmt(heads), *(fmt(r) for r in rows), foot]) + "\n"


def render_header(h: dict) -> str:
    p = lambda v: printable(str(v))
    lines = [
        f"format {p(h.get('format'))} version {p(h.get('version'))}, vmsentry {p(h.get('vmsentry'))}, created {p(h.get('created'))}",
        f"window {h['window']:g} s, {len(h['features'])} features: {p(', '.join(h['features'][:6]))} ...",
        "trained on:",
    ]
    for t in h.get("trained_on") or []:
        lines.append(
            f"  {p(t.get('file'))}: {t.get('frames', 0):,} frames, {_span(t)}, sha256 {p(t.get('sha256') or '-')}"
        )
    trained = h.get("trained") or {}
    entities = h.get("entities") or []
    lines.append(f"{trained.get('samples', 0):,} samples, {len(entities)} entities:")
    for e in entities[:50]:
        lines.append(
            f"  {p(e.get('name'))}: {e.get('samples', 0):,} samples"
            + (f", role {p(e['role'])}" if e.get("role") else "")
        )
    if len(entities) > 50:
        lines.append(f"  ... and {len(entities) - 50} more")
    choice = h.get("choice") or {}
    lines.append(f"scorer {p(h.get('scorer'))}: {p(choice.get('reason', ''))}")
    cal = h.get("calibration")
    if cal:
        desc = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {p(v)}" for k, v in cal.items())
        lines.append(f"calibration: {desc}")
    else:
        lines.append("calibration: none (the model never alarms; detect/watch --model refuse it)")
    lines.append("thresholds: " + ", ".join(f"{k} {v:g}" for k, v in (h.get("thresholds") or {}).items()))
    return "\n".join(lines) + "\n"


def _span(t: dict) -> str:
    first, last = t.get("first"), t.get("last")
    if not isinstance(first, (int, float)) or not isinstance(last, (int, float)):
        return "no time stamps"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(first))
    return f"{stamp} UTC + {last - first:.0f} s"
