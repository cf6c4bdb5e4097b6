"""certctl.acme."""
