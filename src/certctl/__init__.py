"""certctl: a self-hosted private CA with a built-in ACME server."""
