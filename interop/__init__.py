"""ACME client interoperability matrix for certctl: ``python -m interop`` (``make interop``).

Not part of the installed certctl package: it drives real clients against a served
instance with the test suite's helpers (``tests.support``) and writes ``docs/interop.md``.
"""
