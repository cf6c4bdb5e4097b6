"""Load benchmark of certctl's ACME server against Pebble (``python -m bench``).

Not part of the certctl package: run it from the project root, or with ``make bench``.
"""
