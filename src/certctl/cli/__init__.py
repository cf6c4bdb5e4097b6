"""certctl.cli."""
