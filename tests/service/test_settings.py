"""Settings: grouped, each described once, the README's table generated from the descriptions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import GROUPS, Settings, SettingsError, load_settings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_belongs_to_one_group_and_has_a_description():
    grouped = [name for group in GROUPS for name in group.model_fields]
    assert sorted(grouped) == sorted(Settings.model_fields) and len(grouped) == len(set(grouped))
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_the_readme_table_is_the_generated_one():
    text = README.read_text()
    table = re.search(r"<!-- settings table: [^\n]*-->\n(.*?)<!-- /settings table -->", text, re.S)
    assert table is not None, "the README lost its settings-table markers"
    assert table.group(1) == settings_table(), "regenerate the table between the markers with settings_table()"


def test_limits_come_as_one_model_per_route():
    settings = Settings(max_upload_mb=1, max_duration_s=60, request_timeout_s=30, jobs_max_upload_mb=2,
                        jobs_max_duration_s=7200, jobs_timeout_s=9000)  # fmt: skip
    assert settings.localize_limits.max_upload_bytes == 2**20
    assert (settings.localize_limits.work.max_duration_s, settings.localize_limits.work.timeout_s) == (60, 30)
    assert settings.jobs_limits.max_upload_bytes == 2 * 2**20
    assert (settings.jobs_limits.work.max_duration_s, settings.jobs_limits.work.timeout_s) == (7200, 9000)


def test_compute_slots_default_to_the_device():
    assert Settings().compute_slots(nvdec_engines=0) == 2
    assert Settings().compute_slots(nvdec_engines=7) == 14
    assert Settings(max_concurrent=3).compute_slots(nvdec_engines=7) == 3


def test_the_engine_gets_its_settings_and_the_demo_model_by_default():
    engine = Settings(decoder="torchcodec").engine_settings()
    assert engine.decoder == "torchcodec" and engine.checkpoint.name == "checkpoint"


def test_a_wrong_decoder_is_refused_with_its_variable_named(monkeypatch):
    monkeypatch.setenv("TZN_DECODER", "ffmpeg")
    with pytest.raises(SettingsError, match="TZN_DECODER"):
        load_settings()
