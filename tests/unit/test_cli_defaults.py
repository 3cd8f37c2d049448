"""The defaults a command takes from where it runs: the database found walking up, and who acts."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from metawsm.cli.options import actor_name, default_actor_name
from metawsm.database_location import find_database, missing_sqlite_file
from metawsm.settings import load_settings


def _database(directory: Path) -> Path:
    path = directory / ".metawsm" / "metawsm.db"
    path.parent.mkdir(parents=True)
    path.touch()
    return path


def test_the_nearest_database_walking_up_is_found_and_a_bare_metawsm_dir_is_passed_by(
    tmp_path: Path,
) -> None:
    outer = _database(tmp_path)
    inner_root = tmp_path / "a"
    inner = _database(inner_root)
    deep = inner_root / "b" / "c"
    (deep / ".metawsm").mkdir(parents=True)  # legacy signal files only: not a database
    assert find_database(deep).path == inner and find_database(deep).found
    beside = tmp_path / "x"
    beside.mkdir()
    assert find_database(beside).path == outer


def test_with_no_database_above_it_is_the_one_of_the_current_directory_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METAWSM_DATABASE_URL", raising=False)
    found = find_database()
    assert (found.path, found.found) == (tmp_path / ".metawsm" / "metawsm.db", False)
    assert found.reason() == f"no .metawsm/metawsm.db in {tmp_path} or any directory above it"
    assert load_settings().database_url == f"sqlite:///{tmp_path}/.metawsm/metawsm.db"
    assert not (tmp_path / ".metawsm").exists()  # reading the settings created nothing


@pytest.mark.parametrize(
    ("url", "missing"),
    [
        ("sqlite:////nowhere/x.db", Path("/nowhere/x.db")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("postgresql://u@h/db", None),
    ],
)
def test_only_a_sqlite_file_that_does_not_exist_is_missing(url: str, missing: Path | None) -> None:
    assert missing_sqlite_file(url) == missing


def test_the_actor_name_follows_the_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METAWSM_ACTOR_NAME", raising=False)
    monkeypatch.setenv("METAWSM_AGENT_NAME", "alice")
    assert default_actor_name("agent") == "alice"
    for role in ("operator", "human", "system"):
        assert default_actor_name(role) == getpass.getuser()  # never the agent's name
    monkeypatch.setenv("METAWSM_ACTOR_NAME", "olga")
    assert {default_actor_name(role) for role in ("agent", "operator")} == {"olga"}
    assert actor_name("operator", "hana") == "hana"  # an explicit flag always wins
