"""Records for the report tests: a small ComplianceResult with every status, a hostile name, Chinese text and
an [unverified] requirement (built from the model records as analyse/compliance writes them), and a chromium
helper (screenshot, DOM, PDF)."""

from __future__ import annotations

import os
import shutil
import subprocess

from vmsentry.model.compliance import ComplianceResult, Requirement, RequirementResult, RuleDecision, summarise

EVIL_IMG = "<img src=x onerror=alert(1)>"
# a name that, were it ever run, would change the page's title: the tests check the title did not change
EVIL_SCRIPT = "<script>document.title='PWNED'</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars"]


def requirement(rid: str, **fields) -> Requirement:
    base = {
        "framework": "mlps2-l3",
        "id": rid,
        "section": "安全区域边界 Area boundary (8.1.3)",
        "title": f"title of {rid}",
        "title_zh": None,
        "text": f"text of {rid}",
        "text_zh": None,
        "source": "compliance-anchors.md S1",
        "verified": "verified",
    }
    base.update(fields)
    return Requirement(**base)


def compliance_fixture(framework: str = "mlps2-l3") -> ComplianceResult:
    results = (
        RequirementResult(
            requirement(
                "L3-ABS1-05",
                framework=framework,
                title="Default-deny access control between zones",
                title_zh="访问控制",
                text="Set ACL rules at boundaries; by default deny everything except permitted traffic.",
                text_zh="应在网络边界或区域之间根据访问控制策略设置访问控制规则，默认情况下除允许通信外受控接口拒绝所有通信。",
                rules=("VMS-VM-002", "VMS-HOST-001"),
                verified="derived",
            ),
            "fail",
            decided_by=(
                RuleDecision("VMS-VM-002", "fail", (f"vm:{EVIL_IMG}", "vm:build"), "Network-reachable console"),
                RuleDecision("VMS-HOST-001", "pass", ("host:kvm-lab-01",)),
            ),
            gaps=(f"VMS-VM-002 fails on vm:{EVIL_IMG}", "VMS-VM-002 fails on vm:build"),
        ),
        RequirementResult(
            requirement(
                "L3-CES1-14",
                framework=framework,
                section="安全计算环境 Computing environment (8.1.4)",
                title="Protect audit records",
                text_zh="应对审计记录进行保护，定期备份，避免受到未预期的删除、修改或覆盖等。",
                evidence=("audit_log",),
                manual="Check that the audit log is backed up off the host and that the backups are kept 6 months.",
                verified="unverified",
            ),
            "partial",
            evidence=("audit log intact, 184 days kept, verified at 2026-12-01T10:00:00+00:00",),
            gaps=("no backup evidence",),
        ),
        RequirementResult(
            requirement(
                "L3-CES1-01",
                framework=framework,
                section="安全计算环境 Computing environment (8.1.4)",
                title=EVIL_SCRIPT,
                manual="Look at the operator accounts.",
            ),
            "manual",
        ),
        RequirementResult(
            requirement("L3-CNS1-03", framework=framework, rules=("VMS-NET-001",)),
            "pass",
            decided_by=(RuleDecision("VMS-NET-001", "pass", ("network:default",)),),
            evidence=("every network is isolated",),
        ),
        RequirementResult(
            requirement("L3-ABS1-04", framework=framework, not_applicable="no wireless on a hypervisor"),
            "not_applicable",
        ),
    )
    return ComplianceResult(
        framework=framework,
        name="MLPS 2.0 level 3 (GB/T 22239-2019)",
        version="2019",
        source="GB/T 22239-2019",
        generated="2026-12-07T12:00:00+00:00",
        results=results,
        description="test fixture",
        summary=summarise(results),
    )


def chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is not installed (scripts/setup.sh installs it)"
    res = subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def dump_dom(path: str) -> str:
    return chromium("--dump-dom", f"file://{os.path.abspath(path)}").stdout


def screenshot(path: str, png: str, width: int = 1400, height: int = 2000):
    """The page at ``width`` pixels wide, as an RGB numpy array (height x width x 3)."""
    import numpy as np
    from PIL import Image

    chromium(f"--window-size={width},{height}", f"--screenshot={png}", f"file://{os.path.abspath(path)}")
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))
