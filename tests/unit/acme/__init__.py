"""Unit tests of the pure ACME wire-format layer (certctl.acme)."""
