"""The schema we serve keeps the AppSync contract.

- graphql-core's ``find_breaking_changes`` from each AppSync SDL to ours finds
  exactly the deviations in ``api.deviations`` (which the README lists);
- ``@aws_cognito_user_pools`` sits on the same types and fields, with the same
  groups, as in the AppSync SDL;
- the committed ``api/schema.graphql`` is what the code serves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    BreakingChange,
    DirectiveNode,
    GraphQLSchema,
    ListValueNode,
    ObjectTypeDefinitionNode,
    StringValueNode,
    build_schema,
    find_breaking_changes,
    find_dangerous_changes,
    parse,
)

from api.deviations import DEVIATIONS
from api.export_schema import SDL_PATH, current_sdl
from api.schema import build_schema as build_our_schema

# Copies of the two AppSync schemas in shared/reference/, committed so that the contract
# test runs from any clone; test_reference_copies_are_current catches a stale copy.
REFERENCE = Path(__file__).resolve().parent / "data" / "appsync"
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
APPSYNC_FILES = ("appsync-stepfunctions.graphql", "appsync-acms.graphql")
README = Path(__file__).resolve().parents[1] / "docs" / "appsync.md"
README_SECTION = "## Deviations from the AppSync schemas"

# What AppSync declares implicitly and these two schemas use (AppSync has more
# scalars and directives; declaring unused ones would only report them "removed").
APPSYNC_PRELUDE = """
scalar AWSDate
scalar AWSDateTime
directive @aws_cognito_user_pools(cognito_groups: [String]) on OBJECT | FIELD_DEFINITION
"""


def appsync_sdl(name: str) -> str:
    return APPSYNC_PRELUDE + (REFERENCE / name).read_text()


def appsync_schema(name: str) -> GraphQLSchema:
    return build_schema(appsync_sdl(name))


def our_schema() -> GraphQLSchema:
    return build_schema(SDL_PATH.read_text())


def _breaking(old: GraphQLSchema, new: GraphQLSchema) -> list[BreakingChange]:
    return find_breaking_changes(old, new)


def test_committed_sdl_matches_the_code() -> None:
    assert SDL_PATH.read_text() == current_sdl(), (
        "api/schema.graphql is stale: run `python -m api.export_schema`"
    )


def test_sdl_is_the_schema_served() -> None:
    served = build_our_schema().as_str().strip()
    assert served in SDL_PATH.read_text()


@pytest.mark.parametrize("name", APPSYNC_FILES)
def test_appsync_sdl_builds(name: str) -> None:
    schema = appsync_schema(name)
    assert schema.query_type is not None
    assert schema.mutation_type is not None


def test_only_the_documented_deviations_break_the_appsync_schemas() -> None:
    ours = our_schema()
    found = {
        change.description
        for name in APPSYNC_FILES
        for change in _breaking(appsync_schema(name), ours)
    }
    assert found == set(DEVIATIONS), (
        f"undocumented breaking changes: {sorted(found - set(DEVIATIONS))}; "
        f"documented but not found: {sorted(set(DEVIATIONS) - found)}"
    )


def test_the_contract_test_would_catch_a_rename() -> None:
    """A check that could not fail proves nothing: renaming a field must break."""
    renamed = SDL_PATH.read_text().replace("updateOn:", "updatedOnRenamed:")
    acms = appsync_schema("appsync-acms.graphql")
    found = {c.description for c in _breaking(acms, build_schema(renamed))}
    assert "Field Booking.updateOn was removed." in found


def test_additions_are_not_breaking_but_are_known() -> None:
    dangerous = {
        c.description
        for name in APPSYNC_FILES
        for c in find_dangerous_changes(appsync_schema(name), our_schema())
    }
    assert "Enum value ApartmentStatus.RESERVED was added." in dangerous


def _groups(directives: tuple[DirectiveNode, ...] | list[DirectiveNode]) -> Any:
    for directive in directives:
        if directive.name.value != "aws_cognito_user_pools":
            continue
        for argument in directive.arguments or ():
            if argument.name.value == "cognito_groups":
                assert isinstance(argument.value, ListValueNode)
                return tuple(
                    v.value for v in argument.value.values if isinstance(v, StringValueNode)
                )
        return ()  # signed-in users, any group
    return None  # no directive


def _directive_map(sdl: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for definition in parse(sdl).definitions:
        if not isinstance(definition, ObjectTypeDefinitionNode):
            continue
        type_name = definition.name.value
        found[type_name] = _groups(definition.directives or [])
        for field in definition.fields or []:
            found[f"{type_name}.{field.name.value}"] = _groups(field.directives or [])
    return found


@pytest.mark.parametrize("name", APPSYNC_FILES)
def test_cognito_directives_sit_where_appsync_has_them(name: str) -> None:
    theirs = _directive_map(appsync_sdl(name))
    ours = _directive_map(SDL_PATH.read_text())
    mismatched = {
        key: (value, ours.get(key)) for key, value in theirs.items() if ours.get(key) != value
    }
    assert not mismatched, f"(AppSync, ours) differ: {mismatched}"


def test_readme_lists_every_deviation() -> None:
    assert README.exists(), "docs/appsync.md is missing"
    text = README.read_text()
    assert README_SECTION in text, f"docs/appsync.md lacks the section {README_SECTION!r}"
    section = text.split(README_SECTION, 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    listed = set(re.findall(r"^- `([^`]+)`", section, flags=re.MULTILINE))
    assert listed == set(DEVIATIONS), (
        f"docs/appsync.md lists {sorted(listed)}, api/deviations.py has {sorted(DEVIATIONS)}"
    )


def test_reference_copies_are_current() -> None:
    """The committed copies equal shared/reference/ wherever the clone has it beside it."""
    for name in APPSYNC_FILES:
        ours = (REFERENCE / name).read_text()
        assert "type" in ours
        shared = SHARED_REFERENCE / name
        if shared.exists():
            assert ours == shared.read_text(), f"tests/data/appsync/{name} is stale"
