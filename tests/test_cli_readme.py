"""The README's promises that code can check: the two commands, CI, configuration, layout.

The README is a newcomer's page; the reference parts live in ``docs/`` and are checked here
too (every setting and command documented, every link pointing at a file that exists).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from booking.settings import Settings
from cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
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
    section = CONFIGURATION.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    names = {str(field.validation_alias) for field in Settings.model_fields.values()}
    assert names == documented


def test_every_command_is_documented() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in subparsers.choices:
        assert f"`booking {command}" in CONFIGURATION, command


def test_the_sections_the_issue_asks_for_are_there() -> None:
    for heading in (
        "## Why Temporal",
        "## Quick start",
        "## A five-minute tour",
        "## Architecture",
        "## Making a change",
        "## Where to read on",
        "## Benchmarks",
    ):
        assert f"\n{heading}\n" in README, heading
    assert "```mermaid" in README
    for doc, heading in (
        ("configuration.md", "## Configuration"),
        ("deployment.md", "# Production with docker-compose"),
        ("appsync.md", "## Deviations from the AppSync schemas"),
        ("caching.md", "# Caching, CDN and the tenant page"),
    ):
        assert heading in (ROOT / "docs" / doc).read_text(), (doc, heading)


def test_every_relative_link_points_at_a_file() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}"


def test_the_architecture_table_names_folders_that_exist() -> None:
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    rooms = re.findall(r"^\| `([\w./]+)` \|", section, re.M)
    assert len(rooms) >= 8, rooms
    for path in rooms:
        assert (ROOT / path).exists(), path


def test_the_readme_is_a_first_page() -> None:
    """A newcomer's page, not a manual: the reference lives in docs/."""
    assert len(README.splitlines()) < 200


def test_making_a_change_names_what_exists() -> None:
    """Every path, command and name the walk-through sends a newcomer to is there."""
    section = README.split("## Making a change", 1)[1].split("\n## ", 1)[0]
    for path in re.findall(r"`((?:booking|activities|api|tests|docs)/[\w/.<>-]+)`", section):
        if "<" in path:
            path = path.split("<")[0]
        assert (ROOT / path).exists(), path
    for needed in (
        "python -m api.export_schema",
        "BOOKING_RECORD_HISTORIES=1",
        "workflow.patched",
        "with a default",
        "booking_problem",
        "EXPECTED",
    ):
        assert needed in section, needed
    replay = (ROOT / "tests" / "test_replay.py").read_text()
    assert (
        "EXPECTED = {" in replay
        and "BOOKING_RECORD_HISTORIES" in (ROOT / "tests" / "helpers.py").read_text()
    )
