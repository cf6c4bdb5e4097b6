"""JSON columns are TEXT on every backend; one encoder so they compare byte for byte."""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(text: str) -> Any:
    return json.loads(text)
