"""The watcher's settings: the response policy file (``--config``, act/response.py's ``ResponseConfig``) with
the command line on top (an option given wins over the file; a list option given replaces the file's list)."""

from __future__ import annotations

import argparse
import dataclasses

# command-line option (argparse dest) -> ResponseConfig field
CLI_FIELDS = {
    "interface": "interfaces",
    "libvirt": "libvirt",
    "inventory": "inventory",
    "respond": "respond",
    "quarantine": "quarantine",
    "evidence": "evidence",
    "audit": "audit",
    "format": "format",
    "output": "output",
    "syslog": "syslog",
    "metrics": "metrics",
    "netns": "netns",
    "duration": "duration",
    "ttl": "ttl",
}


class ConfigError(Exception):
    """One line naming the file and place, or the option."""


def watch_config(args: argparse.Namespace):
    """The ResponseConfig the watcher runs with: ``--config FILE`` (or the defaults), then every option given."""
    from vmsentry.act import response

    if args.config:
        try:
            config = response.load_response_config(args.config)
        except (OSError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        except Exception as exc:  # the loader's own error class (a line-numbered InputError-like message)
            if type(exc).__module__.startswith("vmsentry"):
                raise ConfigError(str(exc)) from None
            raise
    else:
        config = response.ResponseConfig()
    names = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for option, name in CLI_FIELDS.items():
        value = getattr(args, option, None)
        if value is None or value == []:
            continue
        if name not in names:
            if name == "audit":  # kept on the side when the policy record has no such field
                continue
            raise ConfigError(f"--{option.replace('_', '-')}: not a setting of this version")
        changes[name] = value
    return dataclasses.replace(config, **changes)


def setting(config, name: str, default=None):
    """A setting that an older or newer ResponseConfig may not have."""
    return getattr(config, name, default)
