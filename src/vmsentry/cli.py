"""The ``vmsentry`` command: the verbs are listed in ``vmsentry.commands``; each verb's module is imported
only when it runs, so ``vmsentry --help`` starts fast."""

from __future__ import annotations

import gc
import sys

from vmsentry.commands import COMMANDS, create_command
from vmsentry.commands.base import EXIT_USAGE, FatalError, Parser, split_verb, verb_parser

DESCRIPTION = (
    "Can something inside a VM reach my host, my other VMs or my LAN? vmsentry discovers how every VM is "
    "connected, audits it and says what to change."
)


def build_parser() -> Parser:
    """The top-level parser: --version and the list of verbs (each verb parses its own arguments)."""
    from vmsentry import __version__

    parser = verb_parser("vmsentry", DESCRIPTION, COMMANDS, "VERB")
    parser.add_argument("--version", action="version", version=f"vmsentry {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: the verb's (0, 1, 2; see each verb's --help); 3 for a usage or fatal error."""
    parser = build_parser()
    verb, rest = split_verb(parser, sys.argv[1:] if argv is None else list(argv))
    if verb is None:
        parser.print_help()
        return EXIT_USAGE
    # A scan builds millions of small acyclic objects (elements, findings, dicts): the cyclic garbage
    # collector's passes over them cost about 40 % of a 10,000-VM scan and free nothing. Reference
    # counting still frees everything; this process is short-lived.
    gc.disable()
    try:
        return create_command(verb).main(rest)
    except KeyboardInterrupt:
        print("vmsentry: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except FatalError as exc:
        print(f"vmsentry: {exc}", file=sys.stderr)
        return EXIT_USAGE
