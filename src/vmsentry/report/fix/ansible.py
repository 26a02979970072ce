"""``vmsentry fix --format ansible``: one playbook for a Linux/KVM host, with builtin modules only (the
collections ansible.posix and community.libvirt are not needed, so it runs with a bare ansible-core):

- sysctls: ``lineinfile`` in ``{{ root }}/etc/sysctl.d/90-vmsentry.conf`` and a checked write to /proc/sys;
- qemu.conf / libvirtd.conf: ``lineinfile`` (the ``key = value`` line), notifying a handler that restarts
  libvirtd once, and only when ``root`` is the real one; a secret is appended only when the key is unset,
  with ``no_log`` so it never reaches Ansible's output or log;
- libvirt definitions: the same checked ``virsh dumpxml | xmlstarlet ed | virsh define`` steps as the shell
  script (report/fix/sh.py), ``changed`` only when an edit was made.

- VirtualBox and Proxmox settings, and a template's sysctls on every bridge: the shell script's checked
  steps (report/fix/sh.py, sh_vendors.py) in a ``shell`` task, ``changed`` only when a step changed.

``ansible-playbook -c local -i localhost, -e root=/copy fix.yml`` applies the file changes to a copy.
``--check --diff`` changes nothing: the files' diffs are Ansible's own, and the shell steps run in check
mode too (``check_mode: false`` with ``VMS_CHECK=1``: they only read, and report what would change).
"""

from __future__ import annotations

from collections import defaultdict

import yaml

from vmsentry.model.fix import Change, Fix, FixPlan
from vmsentry.report.fix import Secrets, sh_vendors
from vmsentry.report.fix.sh import BRIDGE, PRELUDE, comment, conf_line, edit_identity, ere, host_lines, q, xml_block

SYSCTL_FILE = "{{ root }}/etc/sysctl.d/90-vmsentry.conf"


CHECK_ENV = {"VMS_CHECK": "{{ '1' if ansible_check_mode else '0' }}"}


def _sysctl_tasks(name: str, change: Change, n: int) -> list[dict]:
    proc = "/proc/sys/" + change.key.replace(".", "/")
    script = (
        f'p={q(proc)}; [ -e "$p" ] || exit 0; '
        f'if [ "$(cat "$p")" != {q(change.after)} ]; then '
        f'[ "$VMS_CHECK" = 1 ] || printf \'%s\\n\' {q(change.after)} > "$p"; echo changed; fi'
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
            "environment": CHECK_ENV,
            "check_mode": False,
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
            f'[ "$VMS_CHECK" = 1 ] || printf \'%s\\n\' {q(line)} >> "$f"; echo changed'
        )
        return {
            "name": f"{name}: set {change.key} (a generated secret) unless set",
            "ansible.builtin.shell": script,
            "environment": CHECK_ENV,
            "check_mode": False,
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


def _sh_task(name: str, lines: list[str], n: int, no_log: bool = False) -> dict:
    """The shell script's checked steps as one task (its functions, then ``lines``)."""
    functions = PRELUDE.split("umask 077\n", 1)[1] + sh_vendors.FUNCTIONS
    script = "\n".join(["set -eu", 'VIRSH="${VIRSH:-virsh}"', 'CHECK="${VMS_CHECK:-0}"', "CHANGED=0 VM_RESTART=''"])
    script += "\nWORK=$(mktemp -d)\ntrap 'rm -rf \"$WORK\"' EXIT\n" + functions
    script += "\n".join(lines) + "\n"
    return {
        "name": name,
        "ansible.builtin.shell": script,
        "environment": {"VIRSH": "{{ virsh }}", "ROOT": "{{ root }}", **CHECK_ENV},
        "check_mode": False,
        "register": f"vms_sh_{n}",
        "changed_when": f"'changed:' in vms_sh_{n}.stdout",
        "no_log": no_log,
    }


def _xml_task(target: str, changes: list[Change], secrets: Secrets, n: int) -> dict:
    name = f"libvirt {target}: definition edits (take effect at its next start)"
    return _sh_task(name, xml_block(target, changes, secrets), n, no_log=any(c.secret for c in changes))


def head_comments(plan: FixPlan) -> list[str]:
    if not plan.template:
        head = [f"# vmsentry fix: {len(plan.fixes)} fix(es), generated {plan.generated}"]
        return head + [comment(f"not fixed here: {u.rule_id} {u.asset}: {u.reason}") for u in plan.unfixable]
    head = [comment(f"vmsentry fix: host baseline template {plan.template}, generated {plan.generated}")]
    head.append("# ansible-playbook --check --diff reports what would change and changes nothing")
    for fix in plan.fixes:
        head.append(comment(f"{fix.rule_id}: {fix.title} (source: {fix.source})"))
        head.append(comment(f"  changes: {fix.summary}; could break: {fix.breaks}; restart: {fix.restart}"))
    head += [comment(f"not in this template: {u.rule_id}: {u.reason}") for u in plan.unfixable]
    return head


def _shell_steps(fix: Fix, change: Change, secrets: Secrets) -> list[str] | None:
    """Changes the playbook makes with the shell script's steps (no builtin module fits)."""
    if change.kind in sh_vendors.LINES or (change.kind == "sysctl" and BRIDGE in change.key):
        return host_lines(fix, change, secrets)
    return None


def render(plan: FixPlan, secrets: Secrets, base: str = ".") -> str:
    tasks: list[dict] = []
    services: set[str] = set()
    xml: dict[str, dict[tuple, Change]] = defaultdict(dict)
    for n, fix in enumerate(plan.fixes):
        name = f"{fix.rule_id} {fix.asset}"
        for m, change in enumerate(fix.changes):
            steps = _shell_steps(fix, change, secrets)
            if steps:
                tasks.append(_sh_task(f"{name}: {change.key} {change.after}", steps, n * 100 + m + 50_000))
            elif change.kind == "sysctl":
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
    head = head_comments(plan)
    body = yaml.safe_dump([play], sort_keys=False, width=10_000, allow_unicode=True)
    return "\n".join(head) + "\n---\n" + body
