"""certctl.observability."""
