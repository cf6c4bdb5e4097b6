"""certctl.domain."""
