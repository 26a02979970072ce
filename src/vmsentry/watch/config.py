"""The watcher's settings: the response policy file (``--config``, act/response.py's ``ResponseConfig``) with
the command line on top (an option given wins over the file; a list option given replaces the file's list)."""

from __future__ import annotations

import argparse

from vmsentry.act.response import ConfigError, ResponseConfig, load_response_config

# command-line option (argparse dest) -> ResponseConfig field
CLI_FIELDS = {
    "interface": "interfaces",
    "libvirt": "libvirt",
    "inventory": "inventory",
    "model": "model",
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

__all__ = ["ConfigError", "watch_config", "setting"]


def watch_config(args: argparse.Namespace) -> ResponseConfig:
    """The ResponseConfig the watcher runs with: ``--config FILE`` (or the defaults), then every option given
    (ConfigError: one line, ``FILE:LINE: problem``)."""
    config = load_response_config(args.config) if args.config else ResponseConfig()
    given = {}
    for option, name in CLI_FIELDS.items():
        value = getattr(args, option, None)
        if value is not None and value != []:
            given[name] = value
    return config.merged(**given)


def setting(config, name: str, default=None):
    """A setting, or ``default`` when it is unset (None, empty)."""
    value = getattr(config, name, None)
    return default if value is None or value == () else value
