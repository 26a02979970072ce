"""``vmsentry fix --format powershell``: a PowerShell script for the Windows-side changes of a FixPlan.

Hyper-V settings (``hyperv_setting``) through the Hyper-V module's cmdlets, .vmx keys of ESXi VMs
(``vmx_key``) through VMware PowerCLI's ``Get-AdvancedSetting`` / ``New-AdvancedSetting`` /
``Set-AdvancedSetting`` / ``Remove-AdvancedSetting``, ESXi port groups (``esxi_setting``) through
``Get-SecurityPolicy | Set-SecurityPolicy``. Idempotent: each block reads the current value and sets it only
when it differs, and says which it did ("changed:" / "unchanged:"). Every name from the scan is a
single-quoted literal ('' doubles a quote; control characters never reach the script). Changes of other
kinds are listed as comments (the sh and patch formats carry them).

``-Check`` changes nothing: each block says "would change:" instead of setting, and the script exits 1 when
something would change (0: nothing to change). A host baseline template (``fix --template windows-hyperv``)
names every VM, adapter or switch (``*``): its blocks loop over ``Get-VM`` / ``Get-VMSwitch`` and set each
object whose value differs, through the Set- cmdlet's object parameter (``-VMNetworkAdapter $item``).
"""

from __future__ import annotations

from vmsentry.model.fix import Change, Fix, FixPlan
from vmsentry.model.text import printable

# Hyper-V cmdlets: which parameter names the object (Get-VM/Set-VM take -Name, the others -VMName).
_VM_NAME_PARAMETER = {"Get-VM": "-Name", "Set-VM": "-Name"}


def quote(value: object) -> str:
    """A PowerShell single-quoted literal: nothing inside is expanded; control characters are escaped
    (printable) so a hostile name cannot end the line."""
    return "'" + printable(str(value)).replace("'", "''") + "'"


def _literal(value: object) -> str:
    """$true/$false stay PowerShell booleans; everything else is a quoted string."""
    text = str(value)
    return text if text in ("$true", "$false") else quote(text)


def _comment(text: str) -> str:
    return "# " + printable(text)


def _report(state: str, what: str) -> str:
    return f"Write-Output {quote(f'{state}: {what}')}"


def _apply(set_line: str, what: str, indent: str = "    ") -> list[str]:
    """The set (or, with -Check, its report) of one value found different."""
    return [
        f"{indent}if ($Check) {{ $script:Pending++; {_report('would change', what)} }} else {{",
        f"{indent}    {set_line}",
        f"{indent}    $script:Changed++; {_report('changed', what)}",
        f"{indent}}}",
    ]


# A template's objects (name "*"): what to loop over per Get- cmdlet, the Set- cmdlet's object parameter,
# and how to name each object in the report. Parameters: learn.microsoft.com/powershell/module/hyper-v/
# (Set-VMNetworkAdapter -VMNetworkAdapter, Disable-VMIntegrationService -VMIntegrationService,
# Set-VMFirmware -VMFirmware, Set-VM -VM, Set-VMSwitch -VMSwitch, Get-VMSwitch -SwitchType).
_EVERY = {
    "Get-VMNetworkAdapter": (
        "@(Get-VM | Get-VMNetworkAdapter)",
        "-VMNetworkAdapter",
        "$item.VMName + ' ' + $item.Name",
    ),
    "Get-VMIntegrationService": (
        "@(Get-VM | Get-VMIntegrationService{select})",
        "-VMIntegrationService",
        "$item.VMName",
    ),
    "Get-VMFirmware": (
        "@(Get-VM | Where-Object {{ $_.Generation -eq 2 }} | Get-VMFirmware)",
        "-VMFirmware",
        "$item.VMName",
    ),
    "Get-VM": ("@(Get-VM)", "-VM", "$item.Name"),
    "Get-VMSwitch": ("@(Get-VMSwitch -SwitchType External)", "-VMSwitch", "$item.Name"),
}


def _hyperv_every(change: Change) -> list[str]:
    d = change.detail
    get, set_, prop = d["get"], d["set"], d["property"]
    items, parameter, label = _EVERY[get]
    items = items.format(select=f" -Name {quote(d['select'])}" if d.get("select") else "")
    expect = d.get("expect", change.after)
    value = "" if set_.startswith(("Enable-", "Disable-")) else f" -{change.key} {_literal(change.after)}"
    compare = (
        f"$item.{prop} -ne {expect}" if expect in ("$true", "$false") else f'"$($item.{prop})" -ne {quote(expect)}'
    )
    what = f"{prop} -> {expect}"
    lines = [
        f"foreach ($item in {items}) {{",
        f"    if ({compare}) {{",
        f"        $what = ({label}) + {quote(': ' + what)}",
    ]
    lines += [
        "        if ($Check) { $script:Pending++; Write-Output ('would change: ' + $what) } else {",
        f"            {set_} {parameter} $item{value} -ErrorAction Stop",
        "            $script:Changed++; Write-Output ('changed: ' + $what)",
        "        }",
        "    }",
        "}",
    ]
    return lines


def _hyperv(change: Change) -> list[str]:
    d = change.detail
    get, set_, prop = d["get"], d["set"], d["property"]
    obj, name = d["object"], d["name"]
    if name == "*" and obj != "VMHost":
        return _hyperv_every(change)
    if obj == "VMHost":
        target = ""
    elif obj == "VMSwitch":
        target = f" -Name {quote(name)}"
    else:
        target = f" {_VM_NAME_PARAMETER.get(get, '-VMName')} {quote(name)}"
    set_target = target if obj != "VM" else f" {_VM_NAME_PARAMETER.get(set_, '-VMName')} {quote(name)}"
    select = f" -Name {quote(d['select'])}" if d.get("select") else ""
    expect = d.get("expect", change.after)
    value = "" if set_.startswith(("Enable-", "Disable-")) else f" -{change.key} {_literal(change.after)}"
    what = f"{obj} {name}{' ' + d['select'] if d.get('select') else ''}: {prop} -> {expect}"
    compare = f"$current -ne {expect}" if expect in ("$true", "$false") else f'"$current" -ne {quote(expect)}'
    if obj == "VMHost":
        what = f"host: {prop} -> {expect}"
    return [
        f"$current = ({get}{target}{select} -ErrorAction Stop).{prop}",
        f"if ({compare}) {{",
        *_apply(f"{set_}{set_target}{select}{value} -ErrorAction Stop", what),
        f"}} else {{ {_report('unchanged', what)} }}",
    ]


def _vmx(change: Change) -> list[str]:
    d = change.detail
    if d.get("product") != "esxi":
        return [_comment(f"{d.get('vm')}: {change.key} -> {change.after} (not an ESXi VM: apply the .vmx patch)")]
    what = f"VM {d['vm']}: {change.key} -> {change.after if change.after is not None else 'removed'}"
    lines = [
        f"$vm = Get-VM -Name {quote(d['vm'])} -ErrorAction Stop",
        f"$setting = Get-AdvancedSetting -Entity $vm -Name {quote(change.key)}",
    ]
    if change.after is None:
        return lines + [
            "if ($setting) {",
            *_apply("$setting | Remove-AdvancedSetting -Confirm:$false", what),
            f"}} else {{ {_report('unchanged', what)} }}",
        ]
    wanted = quote(change.after)
    return lines + [
        "if (-not $setting) {",
        *_apply(
            f"New-AdvancedSetting -Entity $vm -Name {quote(change.key)} -Value {wanted} -Confirm:$false | Out-Null",
            what,
        ),
        f'}} elseif ("$($setting.Value)" -ne {wanted}) {{',
        *_apply(f"$setting | Set-AdvancedSetting -Value {wanted} -Confirm:$false | Out-Null", what),
        f"}} else {{ {_report('unchanged', what)} }}",
    ]


def _portgroup(change: Change) -> list[str]:
    group = change.detail["portgroup"]
    wanted = "$true" if change.after else "$false"
    what = f"port group {group}: {change.key} -> {wanted}"
    return [
        f"$policy = Get-VirtualPortGroup -Name {quote(group)} -ErrorAction Stop | Get-SecurityPolicy",
        f"if ($policy.{change.key} -ne {wanted}) {{",
        *_apply(f"$policy | Set-SecurityPolicy -{change.key} {wanted} | Out-Null", what),
        f"}} else {{ {_report('unchanged', what)} }}",
    ]


RENDERERS = {"hyperv_setting": _hyperv, "vmx_key": _vmx, "esxi_setting": _portgroup}


def _fix_block(fix: Fix) -> list[str]:
    if fix.title:  # a template item
        lines = [_comment(f"{fix.rule_id}: {fix.title}"), _comment(f"source: {fix.source}")]
        lines.append(_comment(f"changes: {fix.summary}"))
    else:
        lines = [_comment(f"{fix.rule_id} {fix.asset}: {fix.summary}")]
    lines.append(_comment(f"could break: {fix.breaks}"))
    if fix.restart != "none":
        lines.append(_comment(f"takes effect after: {'a VM restart' if fix.restart == 'vm' else 'a service restart'}"))
    for change in fix.changes:
        render = RENDERERS.get(change.kind)
        lines += (
            render(change)
            if render
            else [_comment(f"{change.kind} {change.target} {change.key}: see the sh/patch formats")]
        )
    return lines + [""]


def wants(fix: Fix) -> bool:
    """Whether this format has anything to say for a fix (a Windows-side change)."""
    return any(c.kind in RENDERERS for c in fix.changes)


def render(plan: FixPlan, secrets=None, base: str = ".") -> str:
    """The script (``secrets``/``base``: the renderers' common signature; no change here needs either)."""
    what = f"host baseline template {plan.template}" if plan.template else "generated"
    lines = [
        "#Requires -Version 5.1",
        _comment(f"vmsentry fix: {what} {plan.generated} from {', '.join(plan.inputs) or 'a scan'}"),
        _comment("-Check: change nothing, list what would change, exit 1 when something would (0: nothing)."),
        "param([switch]$Check)",
        _comment("Hyper-V blocks need the Hyper-V module (run as administrator on the host); ESXi blocks need"),
        _comment("VMware PowerCLI and a Connect-VIServer session. Each block reads the value before it sets it."),
        "$ErrorActionPreference = 'Stop'",
        "$script:Pending = 0",
        "$script:Changed = 0",
        "",
    ]
    for fix in plan.fixes:
        if wants(fix):
            lines += _fix_block(fix)
    for item in plan.unfixable:
        lines.append(_comment(f"not fixed: {item.rule_id} {item.asset}: {item.reason}"))
    lines += [
        "if ($Check -and $script:Pending) {",
        '    Write-Output "vmsentry fix: $($script:Pending) change(s) would be made"',
        "    exit 1",
        "}",
        "if ($script:Pending + $script:Changed -eq 0) { Write-Output 'vmsentry fix: nothing to change' }",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
