"""scripts/lint: setup.cfg's [tool:ruff] section becomes ruff's arguments, and ruff run with
them fails on a bad file (so the CI step can fail) and honours the section's ignores."""
from __future__ import annotations

import configparser
import subprocess

import pytest

from models.config import ROOT
from scripts import lint
from scripts.requirements import requirements

SECTION = """\
[metadata]
name = x

[tool:ruff]
line-length = 120
Target-Version = "py311"
lint.select = [
    "E4",  # a TOML comment stays
    # a full-line comment is the INI parser's: dropped
    "F",
    ]
lint.per-file-ignores = {"tests/**" = ["F811"]}
"""


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "setup.cfg"
    path.write_text(SECTION, encoding="utf-8")
    return path


def test_section_values_are_kept_as_toml_in_file_order(cfg):
    assert lint.settings(cfg) == {
        "line-length": "120",
        "Target-Version": '"py311"',  # keys keep their case: ruff's are case-sensitive
        "lint.select": '[\n"E4",  # a TOML comment stays\n"F",\n]',
        "lint.per-file-ignores": '{"tests/**" = ["F811"]}',
    }


def test_each_setting_is_one_isolated_override_last_first():
    # The first --config wins in ruff, so the section's later keys go first.
    assert lint.config_arguments({"lint.select": '["E", "F"]', "lint.ignore": '["E501"]'}) == [
        "--isolated", "--config", 'lint.ignore = ["E501"]', "--config", 'lint.select = ["E", "F"]']


def test_the_command_runs_ruff_check_with_the_caller_arguments_last():
    command = lint.command(["--statistics", "models/"], {"line-length": "120"})
    assert command[1:] == ["-m", "ruff", "check", "--isolated", "--config", "line-length = 120",
                           "--statistics", "models/"]


def test_a_missing_section_or_an_empty_value_is_an_error(tmp_path):
    path = tmp_path / "setup.cfg"
    path.write_text("[metadata]\nname = x\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"no \[tool:ruff\] section"):
        lint.settings(path)
    with pytest.raises(SystemExit, match="line-length: no value"):
        lint.config_arguments({"line-length": ""})


def test_the_projects_section_is_there_and_valid_for_ruff():
    values = lint.settings()
    assert values["line-length"] == "120" and "lint.select" in values
    result = subprocess.run([*lint.command(["--show-settings", "scripts/lint.py"], values)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "linter.line_length = 120" in result.stdout


def _ruff(path) -> subprocess.CompletedProcess:
    return subprocess.run(lint.command(["--output-format", "concise", str(path)], lint.settings()),
                          cwd=ROOT, capture_output=True, text=True)


def test_ruff_with_the_projects_config_flags_a_bad_file(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('import os\n\nVALUE = "' + "x" * 120 + '"\n', encoding="utf-8")
    result = _ruff(bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "F401" in result.stdout and "E501" in result.stdout


def test_ruff_with_the_projects_config_passes_a_clean_file_and_honours_ignores(tmp_path):
    good = tmp_path / "good.py"
    # RUF001 (an ambiguous ×) is in the section's lint.ignore, below its lint.select.
    good.write_text('SIZE = "3 × 4"\n', encoding="utf-8")
    result = _ruff(good)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tox_and_ci_run_the_same_ruff():
    declared = [line for line in requirements() if line.startswith("ruff ")]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    assert declared and tox["testenv:lint"]["deps"].strip() == declared[0]
    assert "\nscripts/lint\n" in (ROOT / ".ci/run").read_text(encoding="utf-8")
