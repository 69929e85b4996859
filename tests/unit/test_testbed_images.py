"""Keys and sources of the test bed's Debian base images and services image (testbed.images)."""

import pytest
from testbed import images


def test_mirror_from_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("TESTBED_DEBIAN_MIRROR", raising=False)
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "debian.sources").write_text(
        "Types: deb\n# a comment: with a colon\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    monkeypatch.setattr(images, "APT_SOURCES", (tmp_path / "sources.list", sources))
    assert images.debian_mirror() == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("TESTBED_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.example/x bookworm main\n"
        "deb http://deb.example/debian bookworm main # main archive\n"
    )
    monkeypatch.setattr(images, "APT_SOURCES", (tmp_path / "sources.list", tmp_path / "none.d"))
    assert images.debian_mirror() == "http://deb.example/debian"
    monkeypatch.setenv("TESTBED_DEBIAN_MIRROR", "http://override.example/debian")
    assert images.debian_mirror() == "http://override.example/debian"


def test_no_mirror_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("TESTBED_DEBIAN_MIRROR", raising=False)
    monkeypatch.setattr(images, "APT_SOURCES", (tmp_path / "sources.list", tmp_path / "none.d"))
    with pytest.raises(images.MissingTool, match="TESTBED_DEBIAN_MIRROR"):
        images.debian_mirror()


def test_services_key_follows_the_build_inputs_only(tmp_path, monkeypatch):
    context = tmp_path / "services"
    (context / "src/todo/__pycache__").mkdir(parents=True)
    (context / "src/todo_services.egg-info").mkdir()
    for name in ("Dockerfile", "requirements.lock", "pyproject.toml", "src/todo/app.py"):
        (context / name).write_text(name)
    monkeypatch.setattr(images, "services_context", lambda: context)
    key = images.services_key("base:1")
    # what .dockerignore leaves out of the build does not change the key
    (context / "src/todo/__pycache__/app.cpython-311.pyc").write_bytes(b"\0")
    (context / "src/todo_services.egg-info/PKG-INFO").write_text("x")
    (context / "tests").mkdir()
    (context / "tests/test_x.py").write_text("x")
    assert images.services_key("base:1") == key
    # the sources, the lock file and the base do
    (context / "src/todo/app.py").write_text("changed")
    changed = images.services_key("base:1")
    assert changed != key
    assert images.services_key("base:2") != changed


def test_base_image_tag_names_recipe_and_content():
    tag = images.image_tag("python3")
    assert tag.startswith("testbed/debian-python3:bookworm-")
    assert images.recipe_key("python3") in tag
    assert images.recipe_key("python3") != images.recipe_key("node")


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="known: kube-proxy, node, python3"):
        images.ensure_tarball("nope")
