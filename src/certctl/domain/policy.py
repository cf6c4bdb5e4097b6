"""A profile's identifier policy (value object; the checks live in certctl.policy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IdentifierPolicy:
    """Which identifiers a profile may certify, in every auth mode.

    Name patterns match on label boundaries: ``example.com`` covers ``example.com`` and
    every name under it (never ``evil-example.com``); ``*.example.com`` covers only names
    under it. An empty allow list allows every name; deny wins over allow.
    """

    allowed_names: tuple[str, ...] = ()
    denied_names: tuple[str, ...] = ()
    allow_wildcards: bool = True
    allow_ip: bool = False
    ip_networks: tuple[str, ...] = ()  # CIDRs; empty with allow_ip means any address
    max_identifiers: int = 100
