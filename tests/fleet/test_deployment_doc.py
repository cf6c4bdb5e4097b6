"""docs/deployment.md shows the haproxy configuration the fleet tests run, verbatim.

Both come from ``render_haproxy_config``: the tests render it for their loopback ports,
this test for the layout the page documents, and compares it with the page's ``haproxy``
block, so the page and the tested configuration cannot drift apart. No services needed.
"""

from __future__ import annotations

import re
from pathlib import Path

from certctl.config import AcmeServerSettings
from certctl.ra.gc import STUCK_AFTER
from tests.support.fleet import HaproxyLayout, render_haproxy_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
BLOCK = re.compile(r"^```haproxy\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The operator's layout as the page shows it.
DOC_LAYOUT = HaproxyLayout(
    bind=":443",
    stats_bind="127.0.0.1:8404",
    servers=(
        ("certctl1", "10.0.0.11:8443"),
        ("certctl2", "10.0.0.12:8443"),
        ("certctl3", "10.0.0.13:8443"),
    ),
    ca_file="/etc/haproxy/certctl-root.pem",
)


def test_the_documented_haproxy_config_is_the_tested_one() -> None:
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"{DOC.name} should hold exactly one haproxy block"
    assert blocks[0] == render_haproxy_config(DOC_LAYOUT)


def test_the_documented_reconcile_delay_matches_the_code() -> None:
    default = AcmeServerSettings().reconcile_after
    assert default == STUCK_AFTER
    minutes = int(default.total_seconds() // 60)
    assert default.total_seconds() == minutes * 60
    documented = f"`CERTCTL_ACME_SERVER_RECONCILE_AFTER` ({minutes} minutes by default)"
    assert documented in " ".join(DOC.read_text().split())
