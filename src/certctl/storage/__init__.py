"""certctl.storage."""
