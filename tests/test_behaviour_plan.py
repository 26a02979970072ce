"""The labelled-capture generator's plan, without running it (no root): the same VMs whatever the seed,
every attack kind in the full calibration and evaluation splits, other attackers in evaluation than in
calibration, nothing planned in train, and the truth check that the lab test relies on."""

from __future__ import annotations

from vmsentry.model.behaviour import Incident
from vmsentry.model.inventory_schema import check_inventory

from traffic_lab.behaviour.attacks import FULL_COUNTS, KINDS, attacker_pool, plan
from traffic_lab.behaviour.topology import plan_vms
from traffic_lab.behaviour.truth import check_truth, inventory_doc, truth_doc


def test_vms_depend_on_the_count_only() -> None:
    vms = plan_vms(80)
    assert vms == plan_vms(80)
    roles = [vm.role for vm in vms]
    assert {r: roles.count(r) for r in set(roles)} == {"web": 24, "database": 12, "build": 12, "desktop": 32}
    assert len({vm.mac for vm in vms}) == len({vm.ip for vm in vms}) == 80
    assert all(len(vm.port) <= 15 for vm in vms)  # interface names


def test_full_splits_hold_every_kind_twice_with_other_attackers() -> None:
    vms = plan_vms(80)
    plans = {
        split: plan(vms, split, seed, 720, FULL_COUNTS, quick=False)
        for split, seed in (("calibration", 202), ("evaluation", 303))
    }
    for attacks in plans.values():
        assert 20 <= len(attacks) <= 30
        assert all(sum(a.kind == k for a in attacks) >= 2 for k in KINDS)
        assert all(a.attacker not in a.victims for a in attacks)
        assert all(8 <= a.at <= 720 for a in attacks)
    attackers = {split: {a.attacker.name for a in attacks} for split, attacks in plans.items()}
    assert not attackers["calibration"] & attackers["evaluation"]
    assert not set(attacker_pool(vms, "calibration")) & set(attacker_pool(vms, "evaluation"))
    assert plan(vms, "train", 101, 2400, {}, quick=False) == []


def test_truth_and_inventory_documents() -> None:
    vms = plan_vms(6)
    inside = Incident("scan", vms[0].name, (vms[1].name,), 10.0, 12.0, "nmap -sS ...")
    outside = Incident("beacon", "not-a-vm", (), 5.0, 30.0, "curl ...")
    doc = truth_doc("calibration", "calibration.pcap", vms, [outside, inside])
    assert [i["kind"] for i in doc["incidents"]] == ["beacon", "scan"]  # by start
    assert check_truth(doc, 9.0, 20.0) == [
        "incidents[0]: attacker not-a-vm is not a VM of the file",
        "incidents[0] (beacon): 5.0..30.0 outside 9.0..20.0",
    ]
    inventory = inventory_doc(vms)
    check_inventory(inventory)  # the role per VM is an extra key the schema lets through
    assert [vm["role"] for vm in inventory["vms"]] == [vm.role for vm in vms]
