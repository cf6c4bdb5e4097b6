"""Helpers shared by the test suite: environment gating, served instances, certificate checks."""
