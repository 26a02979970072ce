"""Every crash site the fuzzers found (benchmarks/fuzz.py, tests/test_fuzz_parsers.py), kept as its
minimised input in tests/fixtures/hostile/fuzz/<parser>/: each is parsed within the time and memory limits,
ends in the documented way, and says what ``SAYS`` expects (the bad value named as a per-element error, or
the rest of the input still read)."""

from __future__ import annotations

import pytest

from fuzz_targets import REGRESSIONS, bounded, targets

TARGETS = targets()
CASES = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file())
# what the output of each case contains (the file's own error line, or what is still read)
SAYS = {
    # "\\8" went through Python's unicode_escape codec: a DeprecationWarning today, an error in a later Python
    "separator-bad-escape.log": "bad #separator",
    # 24 MB of records with a corrupt one every few bytes (gzip'd): each resync re-planned the whole buffer,
    # about 60 s; now a damaged buffer is walked record by record (2 s), and every record is still counted
    "corrupt-record-every-few-bytes.pcap.gz": '"packets": 956783, "problems": 9797871',
    "group-without-name.fw": "[GROUP] without a name",  # rules under a nameless [group]/[ipset]: skipped, said
    "fsdev-readonly-not-on-off.args": "is not on/off",  # a bad flag read after every option: an error, not a crash
    "dhcp-server-without-address.log": '"events": 2',  # a DHCP server record naming no server: read, no alert
}


def test_every_case_is_expected():
    assert {p.name for p in CASES} == set(SAYS)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzz_crash_site_stays_fixed(path):
    result = bounded(TARGETS[path.parent.name], path.read_bytes())
    assert SAYS[path.name] in str(result)
