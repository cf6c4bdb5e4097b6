"""certctl.scheduler."""
