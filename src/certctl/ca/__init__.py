"""certctl.ca."""
