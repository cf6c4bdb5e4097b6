"""certctl.ra."""
