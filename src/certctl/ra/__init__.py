"""certctl.ra: the registration authority, the only writer of ACME state."""

from certctl.ra.orders import OrderView
from certctl.ra.service import RegistrationAuthority

__all__ = ["OrderView", "RegistrationAuthority"]
