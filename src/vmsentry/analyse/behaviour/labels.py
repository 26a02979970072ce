"""Ground truth of labelled captures (``truth.json`` beside each) and the labels of samples.

    truth = load_truth("capture.truth.json")     # GroundTruth, or TruthError: one line, file and place
    y = label(samples, truth)                    # per sample: 1 attack, 0 benign, -1 left out

A sample is an attack (1) when its entity is an incident's attacker, its window overlaps the incident's
[start, end] AND the window holds the attack's frames: a frame exchanged with one of the incident's victims
(its busiest peers, ``Samples.peers``, name one), or, for ARP poisoning and DNS tunnels, an ARP reply
or a DNS message sent (``FRAME_KINDS``: a tunnel's queries go to whichever resolver relays them). The attacker's
other windows during the incident (an nmap run spends its first second resolving names; arpspoof sends one
reply every two seconds; a beacon is one request every few seconds) are left out (-1): they are neither the
attack nor clean benign traffic, and counting them as attacks would only measure the labels' coarseness.
A tool that forges its source MACs (macof: ``FORGED_MAC_KINDS``) is seen as the segment's
"(unattributed)" entity, which is then the incident's attacker as the traffic shows it (``seen_attacker``).
A sample of a victim during an incident (and not an attacker in one) is left out (-1): its traffic is the
attack's, not its own behaviour, and it is neither normal nor the attacker. So is a sample of an entity that
is not a VM of the truth file (the host, the router: MACs that carry other parties' packets) during any
incident: what it forwards, resolves and answers then is the attack's traffic seen from the other side (a
DNS tunnel's answers come onto the bridge from the router's MAC). The same windows (attacker, victims,
relays) in the ``HANGOVER`` seconds after an incident are left out too: the damped averages of the minute
after an attack still carry it (an alarm there continues the incident's alert), so they are not benign.
"""

from __future__ import annotations

import json
import math

import numpy as np

from vmsentry.model.behaviour import Entity, GroundTruth, Incident, Samples

SPLITS = ("train", "calibration", "evaluation")
MAX_TRUTH_BYTES = 64 << 20


class TruthError(ValueError):
    """A truth file that cannot be used: the message is one line naming the file and the place."""


FORGED_MAC_KINDS = frozenset({"mac_flood"})
HANGOVER = 60.0  # seconds after an incident whose windows of the entities involved are left out
UNATTRIBUTED = "(unattributed)"
# kinds whose frames are told by what the window holds rather than by a victim's address: ARP poisoning
# (replies sent), a DNS tunnel (DNS messages sent: they go to whichever resolver relays them)
FRAME_KINDS = {"arp_spoof": "arp_replies_out_per_s", "dns_tunnel": "dns_out_per_s"}


def seen_attacker(incident: Incident) -> str:
    """The entity whose windows carry the incident's frames (the attacker, or "(unattributed)" for a tool
    that forges its source MACs)."""
    return UNATTRIBUTED if incident.kind in FORGED_MAC_KINDS else incident.attacker


def label(samples: Samples, truth: GroundTruth) -> np.ndarray:
    """1 (the attack's frames in an attacker's window), -1 (an attacker's window without them, or a victim's
    window during an incident), 0 (the rest), as int8 per sample."""
    y = np.zeros(len(samples), np.int8)
    if not len(samples):
        return y
    names = np.array([e.name for e in samples.entities], object)[samples.entity]
    start, end = samples.start, samples.start + samples.window
    ip_of = {vm.name: vm.ip for vm in truth.vms if vm.ip}
    attack = np.zeros(len(samples), bool)
    attacker_quiet = np.zeros(len(samples), bool)
    victim = np.zeros(len(samples), bool)
    after = np.zeros(len(samples), bool)
    frame_columns = {kind: _column(samples, name) for kind, name in FRAME_KINDS.items()}
    for inc in truth.incidents:
        during = (start <= inc.end) & (end > inc.start)
        involved = np.isin(names, [inc.attacker, seen_attacker(inc), *inc.victims])
        after |= involved & (start > inc.end) & (start <= inc.end + HANGOVER)
        rows = np.flatnonzero(during & (names == seen_attacker(inc)))
        addresses = {ip_of.get(v, v) for v in inc.victims}
        for row in rows.tolist():
            if inc.kind in FORGED_MAC_KINDS:
                carries = True
            elif inc.kind in FRAME_KINDS:
                column = frame_columns.get(inc.kind)
                carries = column is not None and column[row] > 0
            else:
                peers = samples.peers[row] if row < len(samples.peers) else []
                carries = any(peer in addresses for peer, _ in peers)
            (attack if carries else attacker_quiet)[row] = True
        if inc.kind in FORGED_MAC_KINDS:
            attacker_quiet |= during & (names == inc.attacker)  # (its own traffic: not the flood's)
        if inc.victims:
            victim |= during & np.isin(names, list(inc.victims))
    vm_names = {vm.name for vm in truth.vms} | {UNATTRIBUTED}
    relay = np.zeros(len(samples), bool)
    if truth.incidents:
        not_vm = ~np.isin(names, list(vm_names))
        for inc in truth.incidents:
            relay |= not_vm & (start <= inc.end + HANGOVER) & (end > inc.start)
    y[victim | attacker_quiet | relay | after] = -1
    y[attack] = 1
    return y


def _column(samples: Samples, name: str):
    return samples.matrix[:, samples.names.index(name)] if name in samples.names else None


def load_truth(path: str) -> GroundTruth:
    """Read a ``truth.json`` (``{"split", "vms": [{"name","mac","ip","role"}], "incidents": [{"kind",
    "attacker","victims","start","end","tool"}], "capture"?}``)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_TRUTH_BYTES + 1)
    except OSError as exc:
        raise TruthError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_TRUTH_BYTES:
        raise TruthError(f"{path}: larger than {MAX_TRUTH_BYTES >> 20} MB: not a truth file")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TruthError(f"{path}: byte {exc.start}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise TruthError(f"{path}: line {exc.lineno} column {exc.colno}: not JSON ({exc.msg})") from None
    return truth_from(doc, path)


def truth_from(doc, path: str = "<truth>") -> GroundTruth:
    """A ``GroundTruth`` from the parsed JSON of a truth file (``path`` names it in errors)."""
    if not isinstance(doc, dict):
        raise TruthError(f"{path}: top level: expected an object")
    split = doc.get("split")
    if split not in SPLITS:
        raise TruthError(f"{path}: split: expected one of {', '.join(SPLITS)}, not {_show(split)}")
    vms = _list(doc, "vms", path)
    entities = []
    for i, vm in enumerate(vms):
        where = f"vms[{i}]"
        if not isinstance(vm, dict):
            raise TruthError(f"{path}: {where}: expected an object")
        name = _text(vm, "name", f"{path}: {where}", required=True)
        entities.append(
            Entity(
                name,
                _text(vm, "mac", f"{path}: {where}"),
                _text(vm, "ip", f"{path}: {where}"),
                _text(vm, "role", f"{path}: {where}"),
            )
        )
    incidents = []
    for i, inc in enumerate(_list(doc, "incidents", path)):
        where = f"{path}: incidents[{i}]"
        if not isinstance(inc, dict):
            raise TruthError(f"{where}: expected an object")
        victims = inc.get("victims", [])
        if not isinstance(victims, list) or not all(isinstance(v, str) for v in victims):
            raise TruthError(f"{where}.victims: expected a list of names")
        start, end = _time(inc, "start", where), _time(inc, "end", where)
        if end < start:
            raise TruthError(f"{where}: end {end} is before start {start}")
        incidents.append(
            Incident(
                _text(inc, "kind", where, required=True),
                _text(inc, "attacker", where, required=True),
                tuple(victims),
                start,
                end,
                _text(inc, "tool", where) or "",
            )
        )
    capture = doc.get("capture", "")
    return GroundTruth(entities, incidents, split, capture if isinstance(capture, str) else "")


def _list(doc: dict, key: str, path: str) -> list:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise TruthError(f"{path}: {key}: expected a list")
    return value


def _text(obj: dict, key: str, where: str, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise TruthError(f"{where}.{key}: expected text, not {_show(value)}")
    return value


def _time(obj: dict, key: str, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TruthError(f"{where}.{key}: expected a time in seconds since the epoch, not {_show(value)}")
    return float(value)


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
