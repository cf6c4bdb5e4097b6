"""The benchmark report's header (bench.report)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from bench import hostspeed, report, run


def test_the_host_speed_yardstick_is_reported() -> None:
    summary = run.opts_summary(run.parse_args(["--configs", "sqlite-1"]))
    summary["host_speed_s"] = [0.4567, 0.5012]
    text = report.render({}, {}, summary, 60.0)
    line = next(x for x in text.splitlines() if x.startswith("- Host speed:"))
    assert "5,000,000 additions" in line
    assert "0.457 s at the start and 0.501 s at the end" in line


def test_a_report_from_before_the_yardstick_renders_without_it() -> None:
    summary = run.opts_summary(run.parse_args(["--configs", "sqlite-1"]))
    assert "- Host speed:" not in report.render({}, {}, summary, 60.0)


def test_the_yardstick_measures_something(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostspeed, "HOST_SPEED_LOOP", 1000)
    seconds = hostspeed.host_speed_s()
    assert 0 < seconds < 1


def test_the_date_is_the_runs_not_the_renders() -> None:
    summary = run.opts_summary(run.parse_args(["--quick"]))
    summary["finished_at"] = 1_800_000_000.0  # 2027-01-15 08:00 UTC
    assert "- Date: 2027-01-15 08:00 UTC" in report.render({}, {}, summary, 60.0)


def test_a_report_saved_before_the_date_was_kept_takes_the_files_time(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    summary = run.opts_summary(run.parse_args(["--quick"]))
    saved.write_text(json.dumps({"results": {}, "skipped": {}, "options": summary, "elapsed_s": 1}))
    os.utime(saved, (1_800_000_000, 1_800_000_000))
    _, _, options, _ = run._load(saved)
    assert options["finished_at"] == 1_800_000_000
