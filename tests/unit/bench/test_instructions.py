"""The callgrind report of ``make bench-instructions``: labels and the rendered table."""

from __future__ import annotations

import pytest
from bench.instructions import _ANNOTATE_LINE, _inlined_object, _object_label, main, render


def test_annotate_lines_name_their_object() -> None:
    line = (
        " 42,095,520 ( 8.97%)  ???:__ecp_nistz256_mul_montq "
        "[/venv/lib/python3.11/site-packages/cryptography/hazmat/bindings/_rust.abi3.so]"
    )
    match = _ANNOTATE_LINE.match(line)
    assert match is not None
    assert match.group(1) == "42,095,520"
    assert _object_label(match.group("obj")) == "cryptography (Rust, OpenSSL)"
    inlined = _ANNOTATE_LINE.match(" 2,031,586 ( 0.43%)  /b/Python-3.11.7/./Include/object.h:f")
    assert inlined is not None and inlined.group("obj") is None
    assert _object_label(_inlined_object(inlined.group("loc"))) == "Python interpreter"


def test_objects_are_grouped() -> None:
    assert _object_label("/usr/lib/libpython3.11.so.1.0") == "Python interpreter"
    assert _object_label("/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6") == "SQLite"
    assert _object_label("/usr/lib/x86_64-linux-gnu/libc.so.6") == "C library"
    assert _object_label("/venv/site-packages/uvloop/loop.cpython-311.so") == "uvloop, httptools"
    assert (
        _object_label("/usr/lib/x86_64-linux-gnu/libpq.so.5") == "libpq, psycopg (compiled parts)"
    )
    assert _object_label("/venv/site-packages/psycopg_binary/pq.cpython-311.so") == (
        "libpq, psycopg (compiled parts)"
    )
    assert _object_label("/somewhere/else.so") == "other"


def test_render_lists_each_kind_and_object() -> None:
    text = render(
        {
            "issuance": (19.74, {"Python interpreter": 10.0, "SQLite": 1.0}),
            "new-nonce": (0.5, {"Python interpreter": 0.3}),
        },
        {"issuance": 40, "new-nonce": 1000},
    )
    assert "| issuance | 40 | 19.740 |" in text
    assert "| new-nonce | 1000 | 0.500 |" in text
    assert "| Python interpreter | 10.000 | 0.300 |" in text
    assert "| SQLite | 1.000 | 0.000 |" in text


def test_the_postgresql_issuance_needs_a_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CERTCTL_BENCH_POSTGRES_URL", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["--kinds", "issuance,issuance-postgres", "--no-write"])
    assert info.value.code == 2
    assert "issuance-postgres needs --postgres-url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--kinds", "issuance,bogus", "--no-write"])
    assert "unknown kind bogus" in capsys.readouterr().err


def test_an_unreachable_postgresql_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    with pytest.raises(SystemExit) as info:
        main(["--kinds", "issuance-postgres", "--postgres-url", url, "--no-write"])
    assert info.value.code == 2
    assert "PostgreSQL at --postgres-url does not answer" in capsys.readouterr().err
