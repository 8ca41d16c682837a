"""docs/jobs.md lists every setting of the job system and of the tracker's jobs."""

from __future__ import annotations

from pathlib import Path

from tracker.jobs import SETTINGS as TRACKER_SETTINGS

from karaffe.jobs import SETTINGS

DOC = Path(__file__).resolve().parents[2] / "docs" / "jobs.md"


def test_every_jobs_setting_is_documented_with_its_type() -> None:
    text = DOC.read_text()
    for setting in SETTINGS:
        assert f"| `{setting.name}` | {setting.type.__name__} |" in text, setting.name


def test_every_tracker_job_setting_is_documented_with_its_default() -> None:
    text = " ".join(DOC.read_text().split())
    for setting in TRACKER_SETTINGS:
        default = f'"{setting.default}"' if isinstance(setting.default, str) else setting.default
        assert f"`{setting.name}` ({setting.type.__name__}, `{default}`)" in text, setting.name
