"""What every RA operation needs: the store, the clock, settings, and fresh ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from certctl.config import AcmeServerSettings
from certctl.domain import entropy
from certctl.storage.db import Database

Clock = Callable[[], datetime]


def new_id(prefix: str) -> str:
    """128 random bits (RFC 8555 §8.1 asks that for tokens; we do it for every id)."""
    return prefix + entropy.token_urlsafe(16)


def new_token() -> str:
    """RFC 8555 §8.1: at least 128 bits of entropy, base64url; we use 256."""
    return entropy.token_urlsafe(32)


@dataclass(frozen=True)
class RAContext:
    db: Database
    clock: Clock
    settings: AcmeServerSettings
    # Base URL of the relying-party routes (/.well-known/pki/...) that issued leaves point
    # to (CRL distribution point, OCSP); empty: leaves carry no revocation pointers.
    pki_base_url: str = ""


def actor_for(account_id: str) -> str:
    return f"acme:{account_id}"
