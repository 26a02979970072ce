"""The labelled data of bench_baseline.py's train, eval and speed parts, and Kitsune-py beside vmsentry on it.

* ``dataset(folder)``: the three splits (train, calibration, evaluation: ``<split>.pcap`` and
  ``<split>.truth.json``) of the lab generator (/work/data/behaviour), or, when there is none, a small labelled
  set written here with ``gen_traffic.py --truth`` (no root needed).
* ``split_samples``: vmsentry's samples of one split (``commands/behaviour_samples``), labelled as
  ``vmsentry baseline eval`` labels them (attack windows of the attacker; victims' windows left out).
* ``incident_slices`` / ``cut_slices``: the parts of a capture Kitsune-py is run on (it manages ~1,000
  packets/s): per chosen incident, a benign lead-in and the incident, capped in packets.
* ``kitsune_samples``: Kitsune's per-(source MAC, second) scores mapped to vmsentry's entities (MAC -> VM
  by the truth file, other MACs -> "(unattributed)", the largest score per entity and window).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
LAB_DATA = Path("/work/data/behaviour")
SPLITS = ("train", "calibration", "evaluation")
# the small gen_traffic set: 1,000 packets/s of 31 hosts; the splits one after another in time
SMALL_RATE = 1000.0
SMALL_START = 1_767_000_000.0


@dataclass
class Split:
    name: str
    pcap: Path
    truth_path: Path
    truth: object  # model.behaviour.GroundTruth
    floods_relabelled: int = 0  # MAC floods whose attacker was set to "(unattributed)" (flood_senders)


@dataclass
class Dataset:
    folder: Path
    origin: str  # "lab" (real tools, lab generator) or "gen_traffic" (synthetic, made here)
    splits: dict[str, Split] = field(default_factory=dict)

    def source(self):
        """What names the entities: the VMs of all three truth files (as `baseline eval --truth` does)."""
        from vmsentry.commands.baseline import entity_source

        return entity_source(None, [s.truth for s in self.splits.values()])


def lab_complete(folder: Path, needed=SPLITS) -> bool:
    return all((folder / f"{s}.pcap").is_file() and (folder / f"{s}.truth.json").is_file() for s in needed)


def flood_senders(truth):
    """The truth with every MAC flood's attacker set to "(unattributed)": macof sends every frame from a new
    random MAC, so the flood is that entity's traffic (vmsentry pools such MACs there, and the Kitsune side maps
    them there), not the traffic of the VM that ran macof, which goes on as usual. The lab's truth names the VM;
    gen_traffic's already names "(unattributed)". Returns (truth, how many incidents were changed)."""
    from vmsentry.analyse.behaviour.entities import UNATTRIBUTED

    changed = [i for i in truth.incidents if i.kind == "mac_flood" and i.attacker != UNATTRIBUTED]
    if not changed:
        return truth, 0
    truth.incidents = [i._replace(attacker=UNATTRIBUTED) if i.kind == "mac_flood" else i for i in truth.incidents]
    return truth, len(changed)


def load_dataset(folder: Path, origin: str, needed=SPLITS) -> Dataset:
    from vmsentry.analyse.behaviour.labels import load_truth

    data = Dataset(folder, origin)
    for name in needed:
        truth_path = folder / f"{name}.truth.json"
        truth, changed = flood_senders(load_truth(str(truth_path)))
        data.splits[name] = Split(name, folder / f"{name}.pcap", truth_path, truth, changed)
    return data


def small_dataset(packets: int, repeat: int = 3, folder: Path | None = None) -> Dataset:
    """gen_traffic.py's labelled splits in ``folder`` (default benchmarks/.data/baseline-labelled-<packets>-<repeat>/),
    written once: train = ``packets`` benign, calibration and evaluation = ``packets`` // 2 each with every
    attack ``repeat`` times (other seeds, later in time)."""
    folder = folder or DATA / f"baseline-labelled-{packets}-{repeat}"
    if lab_complete(folder):
        return load_dataset(folder, "gen_traffic")
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + "."))
    start = SMALL_START
    for seed, name in enumerate(SPLITS, 11):
        count = packets if name == "train" else max(packets // 2, 1000)
        attacks = ["--attacks", "none"] if name == "train" else ["--repeat", str(repeat)]
        command = [sys.executable, str(REPO / "benchmarks" / "gen_traffic.py"), str(building / f"{name}.pcap")]
        command += ["--packets", str(count), "--rate", str(SMALL_RATE), "--seed", str(seed), "--start", str(start)]
        command += ["--truth", str(building / f"{name}.truth.json"), "--split", name, *attacks]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        start += count / SMALL_RATE + 600.0  # 10 minutes apart: no window runs from one split into the next
    if folder.exists():
        shutil.rmtree(folder)
    building.rename(folder)
    return load_dataset(folder, "gen_traffic")


def dataset(folder: Path | None, small_packets: int, needed=SPLITS) -> Dataset:
    """The data the parts run on (see the module text): the ``needed`` splits; an explicitly named folder must
    hold them."""
    if folder is not None:
        if not lab_complete(folder, needed):
            missing = [f"{s}.pcap/.truth.json" for s in needed if not lab_complete(folder, (s,))]
            raise SystemExit(f"bench_baseline: {folder}: not a complete labelled set (missing {', '.join(missing)})")
        return load_dataset(folder, "lab" if folder.resolve() == LAB_DATA else "given", needed)
    if lab_complete(LAB_DATA, needed):
        return load_dataset(LAB_DATA, "lab", needed)
    return small_dataset(small_packets)


def describe(data: Dataset) -> dict:
    return {
        "folder": str(data.folder),
        "origin": {
            "lab": "the lab generator's real-tools captures (network namespaces; branch lab)",
            "given": "labelled captures given with --data",
            "gen_traffic": "synthetic labelled captures written here by benchmarks/gen_traffic.py --truth "
            "(no complete lab set was found)",
        }[data.origin],
        "splits": {
            name: {
                "pcap": split.pcap.name,
                "incidents": len(split.truth.incidents),
                "vms": len(split.truth.vms),
                "mac_floods_attributed_to_unattributed": split.floods_relabelled,
            }
            for name, split in data.splits.items()
        },
    }


# --- vmsentry's samples --------------------------------------------------------------------------------------


def split_samples(split: Split, source, window: float = 1.0):
    """(all samples of the split's capture, frames read)."""
    from vmsentry.commands.behaviour_samples import samples_from_captures

    frames = []
    samples = samples_from_captures(
        [str(split.pcap)],
        source,
        window,
        on_problem=lambda line: print(f"  {line}", file=sys.stderr),
        on_capture=lambda _path, stats: frames.append(int(stats.packets)),
    )
    return samples, sum(frames)


def labelled(samples, truth):
    """(kept samples, attack labels, kinds, the kept rows of ``samples``): victims' windows left out, as
    `baseline eval` does."""
    from vmsentry.analyse.behaviour.labels import label

    return _labelled(samples, truth, label(samples, truth))


def labelled_by(samples, truth, reference):
    """``labelled`` for samples without feature columns or peers (Kitsune's): each (entity, window) takes
    the label vmsentry's own ``reference`` samples of the same capture got (label() needs the peers and
    columns to see which windows carry the attack's frames); a key vmsentry has no sample of is benign."""
    from vmsentry.analyse.behaviour.labels import label

    names = np.array([e.name for e in reference.entities], object)[reference.entity]
    known = dict(zip(zip(names.tolist(), reference.start.tolist()), label(reference, truth).tolist()))
    own = np.array([e.name for e in samples.entities], object)[samples.entity]
    y = np.array([known.get(key, 0) for key in zip(own.tolist(), samples.start.tolist())], np.int8)
    return _labelled(samples, truth, y)


def _labelled(samples, truth, y):
    from vmsentry.commands.baseline import labelled as cli_labelled

    kept, attack, kinds = cli_labelled(samples, truth, y)
    return kept, attack, kinds, np.flatnonzero(y >= 0)


def benign(samples, truth):
    """The samples that are not inside any labelled incident (train on benign traffic only)."""
    from vmsentry.analyse.behaviour.labels import label
    from vmsentry.commands.baseline import subset

    return subset(samples, np.flatnonzero(label(samples, truth) == 0))


def roles(data: Dataset) -> dict[str, str]:
    return {vm.name: vm.role for split in data.splits.values() for vm in split.truth.vms if vm.role}


# --- Kitsune's slices ---------------------------------------------------------------------------------------


@dataclass
class Slice:
    split: str
    first: float  # the cut's own first and last packet times (set by cut_slices)
    last: float
    incidents: list  # the chosen incidents it was cut around
    packets: int
    path: Path


def incident_slices(truth, per_kind: int, lead: float, longest: float) -> list[tuple[float, float, object]]:
    """Time ranges [start - lead, min(end, start + longest) + 2] around the first ``per_kind`` incidents of
    each kind (by start), sorted by start; ranges may overlap (cut_slices makes the pieces disjoint)."""
    chosen = []
    for kind in sorted({i.kind for i in truth.incidents}):
        chosen += sorted((i for i in truth.incidents if i.kind == kind), key=lambda i: i.start)[:per_kind]
    return sorted(((i.start - lead, min(i.end, i.start + longest) + 2.0, i) for i in chosen), key=lambda r: r[0])


def _capinfo(path: Path) -> tuple[int, float, float]:
    out = subprocess.run(
        ["capinfos", "-M", "-T", "-r", "-c", "-a", "-e", "-S", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    fields = out.split("\t")
    count = int(fields[1])
    if not count:
        return 0, float("nan"), float("nan")
    return count, float(fields[2]), float(fields[3])


def _count_before(path: Path, moment: float) -> int:
    """Packets of ``path`` time-stamped before ``moment``."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", f"frame.time_epoch < {moment:.6f}", "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.split())


def cut_slices(pcap: Path, split: str, ranges, per_incident: int, workdir: Path) -> list[Slice]:
    """Cut each range out of ``pcap`` (editcap -A/-B), keeping its lead-in and the first ``per_incident``
    packets from the incident's start on. A range that overlaps the piece before it starts just after that piece's
    last packet, so that no packet is taken twice and the pieces follow one another in time. Returns the
    slices, their files in ``workdir``."""
    slices: list[Slice] = []
    for k, (begin, end, incident) in enumerate(ranges):
        if slices:
            begin = max(begin, slices[-1].last + 1e-6)
        if begin >= end:  # the piece before already holds this incident's range
            slices[-1].incidents.append(incident)
            continue
        timed, capped = workdir / f"timed-{split}-{k}.pcap", workdir / f"slice-{split}-{k}.pcap"
        subprocess.run(
            ["editcap", "-F", "pcap", "-A", f"{begin:.6f}", "-B", f"{end:.6f}", str(pcap), str(timed)], check=True
        )
        # the lead-in whole, then at most per_incident packets from the incident's start on
        lead_in = _count_before(timed, incident.start)
        keep = f"1-{lead_in + per_incident}"
        subprocess.run(["editcap", "-F", "pcap", "-r", str(timed), str(capped), keep], check=True)
        timed.unlink()
        count, first, last = _capinfo(capped)
        if not count:
            capped.unlink()
            continue
        slices.append(Slice(split, first, last, [incident], count, capped))
    return slices


def join_slices(slices: list[Slice], out: Path) -> None:
    """All slices in time order as one pcap (mergecap -a: one after another)."""
    ordered = sorted(slices, key=lambda s: s.first)
    subprocess.run(["mergecap", "-a", "-F", "pcap", "-w", str(out), *(str(s.path) for s in ordered)], check=True)


def in_slices(start: np.ndarray, window: float, slices: list[Slice]) -> np.ndarray:
    """Samples whose window overlaps one of the slices' covered time."""
    inside = np.zeros(len(start), dtype=bool)
    for s in slices:
        inside |= (start + window > s.first) & (start <= s.last)
    return inside


# --- Kitsune's scores as samples ---------------------------------------------------------------------------


def mac_number(text: str) -> int:
    return int(text.replace(":", "").replace("-", ""), 16)


def kitsune_samples(path: Path, truth_vms, window: float):
    """Kitsune's kitsune-samples.npz as vmsentry ``Samples`` with no feature columns and the largest score
    per (entity, window): MACs of the truth files' VMs are those VMs, any other MAC "(unattributed)"."""
    from vmsentry.analyse.behaviour.entities import UNATTRIBUTED
    from vmsentry.model.behaviour import Entity, Samples

    entities = list(truth_vms) + [Entity(UNATTRIBUTED, None, None, None)]
    index = {mac_number(vm.mac): k for k, vm in enumerate(truth_vms) if vm.mac}
    with np.load(path) as npz:
        mac, start, score = npz["mac"], npz["start"], npz["score"].astype(np.float64)
    unattributed = len(entities) - 1
    entity = np.array([index.get(int(m), unattributed) for m in mac], dtype=np.int32)
    order = np.lexsort((start, entity))
    entity, start, score = entity[order], start[order], score[order]
    if len(entity):
        heads = np.flatnonzero(np.r_[True, (entity[1:] != entity[:-1]) | (start[1:] != start[:-1])])
        entity, start, score = entity[heads], start[heads], np.maximum.reduceat(score, heads)
    samples = Samples(entities, [], window, entity, start, np.zeros((len(entity), 0), np.float32))
    return samples, score


def run_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
