"""The README's promises that code can check: the two commands, CI, configuration, layout."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from booking.cli import build_parser
from booking.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_quick_start_is_two_self_contained_commands() -> None:
    run, test = quick_start_commands()
    for command in (run, test):
        assert "\n" not in command
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'")
    assert run.endswith(".venv/bin/booking dev")
    assert test.endswith(".venv/bin/pytest")


def test_ci_runs_the_readme_test_command_verbatim_in_a_fresh_venv() -> None:
    _, test = quick_start_commands()
    assert f'README_TEST_COMMAND="{test}"' in CI
    assert 'bash -c "$README_TEST_COMMAND"' in CI
    assert "rm -rf .venv" in CI
    assert CI.index("rm -rf .venv") < CI.index('bash -c "$README_TEST_COMMAND"')
    assert "set -euo pipefail" in CI
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111


def test_every_setting_is_in_the_configuration_table() -> None:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    names = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert names == documented


def test_every_command_is_documented() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in subparsers.choices:
        assert f"`booking {command}" in README, command


def test_the_sections_the_issue_asks_for_are_there() -> None:
    for heading in (
        "## Why Temporal",
        "## Quick start",
        "## A five-minute tour",
        "## Architecture",
        "## Configuration",
        "## Production with docker-compose",
        "## Deviations from the AppSync schemas",
        "## Benchmarks",
    ):
        assert f"\n{heading}\n" in README, heading
    assert "```mermaid" in README


def test_the_architecture_table_names_folders_that_exist() -> None:
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    for path in re.findall(r"^\| `([\w./]+)` \|", section, re.M):
        assert (ROOT / path).exists(), path
