"""``report.html`` of an evidence bundle: the page a person reads in a minute after an incident.

What happened (the alerts' summaries), who (the attacker's VM, MAC and IP, the victims), the evidence
(counts, first and last seen, the capture file), what was done (the timeline: detection, decision, action,
release, each with its time, and the response time) and how to release (the exact command).

Every name on the page comes from a VM definition or from traffic (a VM may be called
``<script>alert(1)</script>``): jinja2 escapes every value (autoescape), ``printable`` makes control characters
visible first (a page is valid HTML whatever a name holds), and the page carries no script at all and a
Content-Security-Policy that would refuse one.
"""

from __future__ import annotations

from jinja2 import Environment

from vmsentry.model.text import printable

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>vmsentry incident {{ s.id | p }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60em; margin: 1.5em auto; padding: 0 1em; color: #1c1c1c; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .4em; border-bottom: 1px solid #ddd; }
.sub { color: #555; margin-top: 0; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25em .6em .25em 0; vertical-align: top; border-bottom: 1px solid #eee; }
th { font-weight: 600; white-space: nowrap; } code, pre { font: 13px ui-monospace, monospace; background: #f4f4f4; }
pre { padding: .6em; white-space: pre-wrap; word-break: break-all; }
.sev-critical, .sev-high { color: #a00; font-weight: 600; } .released { color: #070; } .held { color: #a00; }
</style>
</head>
<body>
<h1 id="title">{{ (s.type or "incident") | p }} by {{ who | p }}</h1>
<p class="sub">Incident <code id="incident-id">{{ s.id | p }}</code> &middot; first seen {{ s.times.first_seen or "?" }}
&middot; vmsentry {{ s.vmsentry_version | p }}
&middot; {% if s.times.released %}<span class="released">released {{ s.times.released }}</span>
{% elif s.times.action %}<span class="held">quarantined since {{ s.times.action }}</span>
{% else %}no action taken{% endif %}</p>

<h2 id="what">What happened</h2>
<ul>
{% for a in alerts %}<li><span class="sev-{{ a.severity | p }}">{{ a.severity | p }}</span>
<b>{{ a.type | p }}</b>: {{ a.summary | p }} (confidence {{ a.confidence | p }})</li>
{% endfor %}</ul>

<h2 id="who">Who</h2>
<table>
<tr><th>Attacker</th><td id="attacker">VM <b>{{ (s.vm if s.vm is not none else "(not a known VM)") | p }}</b>,
MAC <code>{{ (attacker.mac or "?") | p }}</code>, IP <code>{{ (attacker.ip or "?") | p }}</code></td></tr>
<tr><th>Victims</th><td id="victims">{% for v in victims %}{% if not loop.first %}, {% endif %}{{ (v.get("vm") or v.get("name") or "") | p }}
<code>{{ v.ip | p }}{% if v.ip and v.mac %} / {% endif %}{{ v.mac | p }}</code>{% else %}none named{% endfor %}
{% if victims_total > victims | length %} (and {{ victims_total - victims | length }} more){% endif %}</td></tr>
</table>

<h2 id="evidence">Evidence</h2>
<table>
<tr><th>Alerts</th><td>{{ alerts | length }}, {{ packets }} packet(s) counted</td></tr>
<tr><th>First / last seen</th><td>{{ s.times.first_seen or "?" }} &ndash; {{ s.times.last_seen or "?" }}</td></tr>
<tr><th>Capture</th><td id="capture">{% if capture %}<code>capture.pcap</code>, {{ capture.size }} bytes,
{{ s.capture_frames }} frame(s) (open it with Wireshark or <code>tcpdump -r capture.pcap</code>){% else %}not written yet{% endif %}</td></tr>
<tr><th>Files</th><td>{% for f in files %}<code>{{ f.path | p }}</code> ({{ f.size }} B){% if not loop.last %}, {% endif %}{% endfor %};
each with its SHA-256 in <code>manifest.json</code>: check with <code>vmsentry incidents verify {{ s.id | p }}</code></td></tr>
</table>

<h2 id="done">What was done</h2>
<table id="timeline">
<tr><th>Time (UTC)</th><th>Step</th><th>Detail</th></tr>
{% for e in timeline %}<tr class="step-{{ e.kind | p }}"><td>{{ e.time }}</td><td>{{ e.kind | p }}</td><td>{{ detail(e) | p }}</td></tr>
{% endfor %}</table>
<p id="response">Response time (first attack frame to action in force):
<b>{% if s.response_seconds is not none %}{{ "%.3f" | format(s.response_seconds) }} s{% else %}no action{% endif %}</b></p>

<h2 id="release">How to release</h2>
<p>Once the VM is clean (or the alert was wrong), give it its network back exactly as it was:</p>
<pre id="release-command">{{ s.release_command | p }}</pre>
</body>
</html>
"""

_ENV = Environment(autoescape=True, keep_trailing_newline=True)
_ENV.filters["p"] = lambda value: printable("" if value is None else str(value))
_PAGE = _ENV.from_string(TEMPLATE)
SKIP = ("kind", "time", "epoch")


def _detail(event: dict) -> str:
    return "; ".join(f"{k}: {v}" for k, v in event.items() if k not in SKIP and v not in (None, ""))


def render_report(summary: dict, alerts: list[dict], timeline: list[dict]) -> str:
    """The page for an incident: ``summary`` as ``Incident.summary()`` plus its ``files``."""
    files = [f for f in summary.get("files", []) if f["path"] not in ("report.html", "manifest.json")]
    victims, total = [], 0
    for alert in alerts:
        for victim in alert.get("victims") or []:
            if victim not in victims:
                victims.append(victim)
        total += (alert.get("evidence") or {}).get("victims_total", len(alert.get("victims") or []))
    attacker = summary.get("attacker") or {}
    who = summary.get("vm") or attacker.get("mac") or attacker.get("ip") or "an unknown source"
    return _PAGE.render(
        s=summary,
        alerts=alerts,
        attacker=attacker,
        who=who,
        victims=victims[:50],
        victims_total=max(total, len(victims)),
        packets=sum(int(a.get("count") or 0) for a in alerts),
        capture=next((f for f in summary.get("files", []) if f["path"] == "capture.pcap"), None),
        files=files,
        timeline=timeline,
        detail=_detail,
    )
