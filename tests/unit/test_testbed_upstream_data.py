"""Where the test bed finds the upstream test data (crds/ and charts/): TODO_PLATFORM_TEST_DATA, else
`shared` beside the repository, else `shared` beside the repository a clean clone was made from."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from testbed import kube
from testbed.core import MissingTool


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """<tmp>/work/main (a repository) beside <tmp>/work/shared (the test data), and a clone of main in
    <tmp>/ci/clone, as CI makes one."""
    main = tmp_path / "work" / "main"
    main.mkdir(parents=True)
    git("init", "-q", cwd=main)
    identity = ("-c", "user.name=t", "-c", "user.email=t@example.com")
    git(*identity, "commit", "-q", "--allow-empty", "-m", "x", cwd=main)
    for sub in ("crds", "charts"):
        (tmp_path / "work" / "shared" / sub).mkdir(parents=True)
    (tmp_path / "ci").mkdir()
    git("clone", "-q", str(main), "clone", cwd=tmp_path / "ci")
    monkeypatch.delenv("TODO_PLATFORM_TEST_DATA", raising=False)
    monkeypatch.delenv("TODO_PLATFORM_CRDS_DIR", raising=False)
    return tmp_path


def test_the_repository_finds_shared_beside_it(workspace, monkeypatch):
    monkeypatch.setattr(kube, "repo_root", lambda: workspace / "work" / "main")
    assert kube.upstream_data_dir() == (workspace / "work" / "shared").resolve()
    assert kube.crds_dir() == (workspace / "work" / "shared" / "crds").resolve()
    assert kube.charts_dir() == (workspace / "work" / "shared" / "charts").resolve()


def test_a_clean_clone_elsewhere_finds_the_data_beside_its_origin(workspace, monkeypatch):
    monkeypatch.setattr(kube, "repo_root", lambda: workspace / "ci" / "clone")
    assert kube.upstream_data_dir() == (workspace / "work" / "shared").resolve()


def test_a_clone_of_the_git_directory_finds_the_data_too(workspace, monkeypatch):
    clone = workspace / "ci" / "clone"
    git("remote", "set-url", "origin", str(workspace / "work" / "main" / ".git"), cwd=clone)
    monkeypatch.setattr(kube, "repo_root", lambda: clone)
    assert kube.upstream_data_dir() == (workspace / "work" / "shared").resolve()


def test_a_clone_of_a_network_remote_names_the_places_it_tried(workspace, monkeypatch):
    clone = workspace / "ci" / "clone"
    git("remote", "set-url", "origin", "https://example.com/todo-platform.git", cwd=clone)
    monkeypatch.setattr(kube, "repo_root", lambda: clone)
    with pytest.raises(MissingTool) as error:
        kube.upstream_data_dir()
    assert str((workspace / "ci" / "shared").resolve()) in str(error.value)
    assert "TODO_PLATFORM_TEST_DATA" in str(error.value)


def test_the_environment_variable_wins_and_is_the_only_place_tried(workspace, monkeypatch):
    monkeypatch.setattr(kube, "repo_root", lambda: workspace / "work" / "main")
    elsewhere = workspace / "elsewhere"
    (elsewhere / "charts").mkdir(parents=True)
    monkeypatch.setenv("TODO_PLATFORM_TEST_DATA", str(elsewhere))
    assert kube.charts_dir() == (elsewhere / "charts").resolve()
    monkeypatch.setenv("TODO_PLATFORM_TEST_DATA", str(workspace / "nowhere"))
    with pytest.raises(MissingTool) as error:
        kube.upstream_data_dir()
    assert "nowhere" in str(error.value) and "shared" not in str(error.value).split(";")[1]


def test_the_older_crds_variable_still_overrides_the_crds(workspace, monkeypatch, tmp_path):
    monkeypatch.setattr(kube, "repo_root", lambda: workspace / "work" / "main")
    own = tmp_path / "my-crds"
    own.mkdir()
    monkeypatch.setenv("TODO_PLATFORM_CRDS_DIR", str(own))
    assert kube.crds_dir() == own.resolve()
