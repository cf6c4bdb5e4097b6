"""certctl.policy."""
