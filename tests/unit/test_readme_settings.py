"""README's configuration reference is generated from the settings declarations."""

from __future__ import annotations

from device_service.settings import Settings as DeviceSettings
from keyslot_server import settings_doc
from license_service.settings import Settings as LicenseSettings
from tests.harness import ROOT


def test_the_readme_lists_every_setting_as_declared() -> None:
    text = (ROOT / "README.md").read_text()
    fresh = settings_doc.rewritten(text, [LicenseSettings, DeviceSettings])
    assert fresh == text, "README's settings reference is stale: run `make docs`"
