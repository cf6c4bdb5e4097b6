"""The clients of the matrix, in row order."""

from __future__ import annotations

from interop.clients.acmelib import AcmeLibrary
from interop.clients.base import Client
from interop.clients.certbot import Certbot
from interop.clients.lego import Lego

CLIENTS: tuple[Client, ...] = (Certbot(), AcmeLibrary(), Lego())
