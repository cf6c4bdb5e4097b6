"""certctl.audit."""
