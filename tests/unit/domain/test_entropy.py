"""Random octets come from the kernel in blocks, each octet handed out once, and a forked
child does not hand out its parent's block again."""

from __future__ import annotations

import os
import re

from certctl.domain import entropy


def test_draws_do_not_repeat_across_blocks() -> None:
    draws = [entropy.token_bytes(16) for _ in range(2000)]  # several 4 KiB blocks
    assert len(set(draws)) == len(draws)
    assert all(len(d) == 16 for d in draws)


def test_formats_match_the_secrets_module() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", entropy.token_hex(16))
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", entropy.token_urlsafe(16))
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", entropy.token_urlsafe(32))
    assert len(entropy.token_bytes(10_000)) == 10_000  # larger than a block


def test_a_forked_child_draws_its_own_octets() -> None:
    entropy.token_bytes(1)  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, entropy.token_bytes(32))
        os._exit(0)
    os.close(write)
    child = os.read(read, 32)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != entropy.token_bytes(32)
