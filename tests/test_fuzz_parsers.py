"""Property-based fuzzing of every parser (issue 11, section 1): the real corpus files, mutated (bytes
flipped, cut, inserted, lines duplicated, dropped or swapped), never make a parser raise anything but its
documented bad-input error, never run past the per-input time limit and never need more than the memory
limit (tests/fuzz_targets.py: ``bounded`` arms an alarm and lowers the address-space limit around each
example; a hang or MemoryError fails the example).

The default run keeps the whole suite within about a minute (``MAX_EXAMPLES`` per parser, derandomized so
CI sees the same examples every time); ``VMSENTRY_FUZZ_EXAMPLES=2000`` runs a longer search. Hypothesis'
own timing deadline is off: a slow example on a loaded machine is not a failure, a hang past the alarm is.
The coverage-guided counterpart is benchmarks/fuzz.py.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import bounded, crash_site, targets

# the hostile-input suite: bounded subprocesses and many mutated inputs; out of the fast lane, in every
# full run (scripts/test.sh, CI)
pytestmark = pytest.mark.slow

TARGETS = targets()
MAX_EXAMPLES = int(os.environ.get("VMSENTRY_FUZZ_EXAMPLES", "500"))
SEED_BYTES = 32768  # each seed is cut here: the head of a capture is still a capture, and examples stay fast
TOKENS = [
    b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\r", b"\n", b"\t", b" ", b'"', b"'", b"\\", b",", b",,", b"=", b":",
    b"<", b">", b"</", b"/>", b"<!--", b"]]>", b"&amp;", b"&#0;", b"{", b"}", b"[", b"]", b"null", b"true", b"-1",
    b"0", b"65536", b"99999999999999999999999", b"1e400", b"nan", b"-inf", b"0x", b"#", b"-", b"*", b"&", b"%s",
    b"\xc3", b"\xe2\x80\xae", b"a" * 300,
]  # fmt: skip


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("flip", "cut", "insert", "token", "dup-line", "drop-line", "swap-lines")))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            data = data[:at] if draw(st.booleans()) else data[:at] + data[at + draw(st.integers(1, 64)) :]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS)) * draw(st.sampled_from((1, 1, 2, 50)))
        else:
            lines = bytes(data).split(b"\n")
            i = min(draw(st.integers(0, len(lines))), len(lines) - 1)
            j = min(draw(st.integers(0, len(lines))), len(lines) - 1)
            if kind == "dup-line":  # a repeated element or setting, a few times or many
                lines[i:i] = lines[i : i + 3] * draw(st.sampled_from((1, 2, 200)))
            elif kind == "drop-line":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def _seeds(name: str) -> list[bytes]:
    files = TARGETS[name].seed_files()
    assert files, f"no seed files for {name} (is ../shared there? set VMSENTRY_SHARED)"
    return [f.read_bytes()[:SEED_BYTES] for f in files]


@pytest.mark.filterwarnings(
    "error"
)  # a warning on hostile input reaches the user's terminal, or a later Python's error
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutated_corpus_never_crashes_hangs_or_grows(name):
    target = TARGETS[name]

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated(_seeds(name)))
    def parse(data: bytes) -> None:
        try:
            bounded(target, data)
        except Exception as exc:  # name the site, keep the traceback as the cause
            raise AssertionError(f"{name}: {crash_site(exc)}: {exc}") from exc

    parse()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_parses(name):
    """The unmutated corpus is read without a crash (the baseline the mutations start from)."""
    target = TARGETS[name]
    for seed in target.seed_files():
        bounded(target, seed.read_bytes())
