"""certctl.wfe."""
