"""Each option's range is declared once (``RANGES``) and holds everywhere it can be set.

Every test here is generated from that table: a range added to it is tested by
the spec, the settings, the CLI and an SQS message's ``processing_config``
without a new test. (The API's form fields: ``tests/integration/api/test_batches_api.py``.)
"""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError
from typer.main import get_command
from typer.testing import CliRunner

from imgpipe.domain.spec import RANGES, BatchSpec, Range
from imgpipe.entrypoints.cli import app
from imgpipe.errors import ConfigError, MessageError
from imgpipe.service.fanout import _CONFIG_FIELDS, options_from_config
from imgpipe.settings import SPEC_OPTIONS, Settings

DEFAULTS = BatchSpec().flat()


def outside(allowed: Range, kind: type) -> list[float]:
    """The nearest values just outside ``allowed`` (a step of 1, or 0.01 for floats)."""
    step = 1 if kind is int else 0.01
    values = [] if allowed.low is None else [round(allowed.low - step, 6)]
    return values + ([] if allowed.high is None else [round(allowed.high + step, 6)])


def edges(allowed: Range) -> list[float]:
    return [v for v in (allowed.low, allowed.high) if v is not None]


CASES = [
    pytest.param(name, value, id=f"{name}={value}")
    for name, allowed in RANGES.items()
    for value in outside(allowed, type(DEFAULTS[name]))
]


def test_the_grid_limits_are_the_apis_and_every_range_has_a_bound() -> None:
    assert (str(RANGES["rows"]), str(RANGES["cols"]), str(RANGES["quality"])) == (
        "1 to 50",
        "1 to 50",
        "1 to 100",
    )
    assert all(edges(r) for r in RANGES.values())
    assert set(RANGES) <= set(DEFAULTS)  # every range is of an option the spec has


@pytest.mark.parametrize(("name", "value"), CASES)
def test_the_spec_refuses_a_value_outside_its_range_and_names_it(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"{name}={re.escape(repr(value))} \(allowed: "):
        BatchSpec.of(**{name: value})


@pytest.mark.parametrize("name", RANGES)
def test_the_spec_accepts_both_edges(name: str) -> None:
    kind = type(DEFAULTS[name])
    for value in edges(RANGES[name]):
        assert BatchSpec.of(**{name: kind(value)}).flat()[name] == value


SETTINGS_CASES = [
    pytest.param(field, value, id=f"{field}={value}")
    for field, option in SPEC_OPTIONS.items()
    if option in RANGES
    for value in outside(RANGES[option], type(DEFAULTS[option]))
]


def test_every_range_of_a_setting_reaches_the_settings() -> None:
    ranged = {option for option in SPEC_OPTIONS.values() if option in RANGES}
    assert ranged == set(RANGES)


@pytest.mark.parametrize(("field", "value"), SETTINGS_CASES)
def test_a_setting_outside_its_range_is_refused(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


@pytest.mark.parametrize(("field", "value"), SETTINGS_CASES)
def test_a_setting_outside_its_range_is_refused_from_the_environment(
    field: str, value: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    alias = Settings.model_fields[field].validation_alias.choices[0]  # type: ignore[union-attr]
    monkeypatch.setenv(str(alias), str(value))
    with pytest.raises(ValidationError):
        Settings()


def cli_flags() -> dict[str, str]:
    """``run``'s options that are spec options with a range -> their flag."""
    command = get_command(app).commands["run"]  # type: ignore[attr-defined]
    return {p.name: p.opts[0] for p in command.params if p.name in RANGES}


def test_the_cli_bounds_every_numeric_spec_option_it_offers() -> None:
    assert set(cli_flags()) == {
        "rows", "cols", "cell_size", "quality", "max_images", "min_images", "near_duplicates",
        "concurrency", "per_host_concurrency", "max_workers", "timeout", "retries",
    }  # fmt: skip


CLI_CASES = [
    pytest.param(n, v, id=f"{n}={v}") for n, v in (c.values for c in CASES) if n in cli_flags()
]


@pytest.mark.parametrize(("name", "value"), CLI_CASES)
def test_the_cli_refuses_a_value_outside_its_range_naming_flag_and_range(
    name: str, value: float
) -> None:
    flag = cli_flags()[name]
    result = CliRunner().invoke(app, ["run", "missing.csv", flag, str(value)])
    message = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}': {value} is outside the allowed range, {RANGES[name]}" in (
        message
    )


CONFIG_CASES = [
    pytest.param(key, value, id=f"{key}={value}")
    for key, (target, kind) in _CONFIG_FIELDS.items()
    if target in RANGES
    for value in outside(RANGES[target], kind)
]


@pytest.mark.parametrize(("key", "value"), CONFIG_CASES)
def test_a_processing_config_outside_a_range_is_a_message_error_naming_the_key(
    key: str, value: float
) -> None:
    with pytest.raises(MessageError, match=rf"processing_config\.{key}="):
        options_from_config({key: value})


def test_a_processing_config_passes_how_to_read_the_csv_and_checks_it() -> None:
    """The API's form fields reach the AWS planner: columns and encoding, as text."""
    config = {"creator_column": "Autor", "url_column": "Bild", "encoding": "CP1252", "rows": 3}
    assert options_from_config(config) == {
        "creator_column": "Autor",
        "url_column": "Bild",
        "encoding": "cp1252",
        "rows": 3,
    }
    with pytest.raises(MessageError, match=r"processing_config\.encoding: unknown text encoding"):
        options_from_config({"encoding": "klingon"})
    with pytest.raises(MessageError, match=r"processing_config\.url_column: expected str"):
        options_from_config({"url_column": 7})


def test_a_processing_config_names_the_crop_and_a_bad_one_is_a_message_error() -> None:
    assert options_from_config({"crop": "smart"}) == {"crop": "smart"}
    with pytest.raises(MessageError, match=r"processing_config\.crop: .*crop='faces'"):
        options_from_config({"crop": "faces"})
