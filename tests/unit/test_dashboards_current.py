"""The committed dashboard JSON is what its source (roles/monitoring/files/dashboards/build.py)
builds: edit the source, then run it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "roles" / "monitoring" / "files" / "dashboards" / "build.py"


def load_build(directory: Path | None = None) -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_build", BUILD)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if directory is not None:
        module.OUT = directory
    return module


def test_committed_dashboards_match_their_source() -> None:
    result = subprocess.run(
        [sys.executable, str(BUILD), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_check_names_a_stale_and_an_unbuilt_dashboard(tmp_path: Path) -> None:
    build = load_build(tmp_path)
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
    (tmp_path / "logs.json").write_text("{}\n")
    (tmp_path / "forgotten.json").write_text("{}\n")
    assert build.stale() == ["logs.json", "forgotten.json"]
    assert build.main(["--check"]) == 1
