"""The clients of the matrix, in row order."""

from __future__ import annotations

from interop.clients.acmelib import AcmeLibrary
from interop.clients.acmetiny import AcmeTiny
from interop.clients.base import Client
from interop.clients.caddy import Caddy
from interop.clients.certbot import Certbot
from interop.clients.dehydrated import Dehydrated
from interop.clients.lego import Lego
from interop.clients.uacme import Uacme

CLIENTS: tuple[Client, ...] = (
    Certbot(),
    AcmeLibrary(),
    Lego(),
    Caddy(),
    Uacme(),
    Dehydrated(),
    AcmeTiny(),
)
