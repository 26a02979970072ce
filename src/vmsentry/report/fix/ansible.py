"""``vmsentry fix --format ansible``: one playbook for a Linux/KVM host, with builtin modules only (the
collections ansible.posix and community.libvirt are not needed, so it runs with a bare ansible-core):

- sysctls: ``lineinfile`` in ``{{ root }}/etc/sysctl.d/90-vmsentry.conf`` and a checked write to /proc/sys;
- qemu.conf / libvirtd.conf: ``lineinfile`` (the ``key = value`` line), notifying a handler that restarts
  libvirtd once, and only when ``root`` is the real one; a secret is appended only when the key is unset,
  with ``no_log`` so it never reaches Ansible's output or log;
- libvirt definitions: the same checked ``virsh dumpxml | xmlstarlet ed | virsh define`` steps as the shell
  script (report/fix/sh.py), ``changed`` only when an edit was made.

``ansible-playbook -c local -i localhost, -e root=/copy fix.yml`` applies the file changes to a copy.
"""

from __future__ import annotations

from collections import defaultdict

import yaml

from vmsentry.model.fix import Change, FixPlan
from vmsentry.report.fix import Secrets
from vmsentry.report.fix.sh import PRELUDE, conf_line, edit_identity, ere, q, xml_block

SYSCTL_FILE = "{{ root }}/etc/sysctl.d/90-vmsentry.conf"


def _sysctl_tasks(name: str, change: Change, n: int) -> list[dict]:
    proc = "/proc/sys/" + change.key.replace(".", "/")
    script = (
        f'p={q(proc)}; [ -e "$p" ] || exit 0; '
        f'if [ "$(cat "$p")" != {q(change.after)} ]; then printf \'%s\\n\' {q(change.after)} > "$p"; echo changed; fi'
    )
    return [
        {
            "name": f"{name}: persist {change.key}",
            "ansible.builtin.lineinfile": {
                "path": SYSCTL_FILE,
                "regexp": f"^\\s*{ere(change.key)}\\s*=",
                "line": f"{change.key} = {change.after}",
                "create": True,
                "mode": "0644",
            },
        },
        {
            "name": f"{name}: set {change.key} now",
            "ansible.builtin.shell": script,
            "register": f"vms_sysctl_{n}",
            "changed_when": f"'changed' in vms_sysctl_{n}.stdout",
        },
    ]


def _conf_task(name: str, change: Change, service: str, secrets: Secrets, n: int) -> dict:
    path = "{{ root }}" + change.target
    line = conf_line(change, secrets)
    if change.secret:
        script = (
            f'f={q(path)}; grep -Eq {q("^[[:space:]]*" + ere(change.key) + "[[:space:]]*=")} "$f" && exit 0; '
            f"printf '%s\\n' {q(line)} >> \"$f\"; echo changed"
        )
        return {
            "name": f"{name}: set {change.key} (a generated secret) unless set",
            "ansible.builtin.shell": script,
            "register": f"vms_conf_{n}",
            "changed_when": f"'changed' in vms_conf_{n}.stdout",
            "no_log": True,
            "notify": f"restart {service}",
        }
    return {
        "name": f"{name}: {line}",
        "ansible.builtin.lineinfile": {"path": path, "regexp": f"^\\s*{ere(change.key)}\\s*=", "line": line},
        "notify": f"restart {service}",
    }


def _xml_task(target: str, changes: list[Change], secrets: Secrets, n: int) -> dict:
    functions = PRELUDE.split("umask 077\n", 1)[1]
    script = "\n".join(["set -eu", 'VIRSH="${VIRSH:-virsh}"', "CHANGED=0 VM_RESTART=''"])
    script += "\nWORK=$(mktemp -d)\ntrap 'rm -rf \"$WORK\"' EXIT\n" + functions
    script += "\n".join(xml_block(target, changes, secrets)) + "\n"
    return {
        "name": f"libvirt {target}: definition edits (take effect at its next start)",
        "ansible.builtin.shell": script,
        "environment": {"VIRSH": "{{ virsh }}"},
        "register": f"vms_xml_{n}",
        "changed_when": f"'changed:' in vms_xml_{n}.stdout",
        "no_log": any(c.secret for c in changes),
    }


def render(plan: FixPlan, secrets: Secrets, base: str = ".") -> str:
    tasks: list[dict] = []
    services: set[str] = set()
    xml: dict[str, dict[tuple, Change]] = defaultdict(dict)
    for n, fix in enumerate(plan.fixes):
        name = f"{fix.rule_id} {fix.asset}"
        for m, change in enumerate(fix.changes):
            if change.kind == "sysctl":
                tasks += _sysctl_tasks(name, change, n * 100 + m)
            elif change.kind == "config_key":
                service = fix.service or "libvirtd"
                services.add(service)
                tasks.append(_conf_task(name, change, service, secrets, n * 100 + m))
            elif change.kind == "xml_edit":
                xml[change.target].setdefault(edit_identity(change), change)
    for n, (target, changes) in enumerate(xml.items()):
        tasks.append(_xml_task(target, list(changes.values()), secrets, n))
    handlers = [
        {
            "name": f"restart {service}",
            "ansible.builtin.service": {"name": service, "state": "restarted"},
            "when": "root in ('', '/')",
        }
        for service in sorted(services)
    ]
    play = {
        "name": "vmsentry fix",
        "hosts": "all",
        "gather_facts": False,
        "vars": {"root": "", "virsh": "virsh"},
        "tasks": tasks,
        "handlers": handlers,
    }
    head = [f"# vmsentry fix: {len(plan.fixes)} fix(es), generated {plan.generated}"]
    head += [f"# not fixed here: {u.rule_id} {u.asset}: {' '.join(u.reason.split())}" for u in plan.unfixable]
    body = yaml.safe_dump([play], sort_keys=False, width=10_000, allow_unicode=True)
    return "\n".join(head) + "\n---\n" + body
