"""Every registered entry point loads through PasteDeploy, by egg name and by class."""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path

import pytest
import webob
from paste.deploy import loadapp

# Entry-point name -> public class (the name in CamelCase, as the style guide fixes).
CLASSES = {
    "request_id": "RequestId",
    "catch_errors": "CatchErrors",
    "faultwrap": "FaultWrap",
    "sizelimit": "SizeLimit",
    "ratelimit": "RateLimit",
    "noauth": "NoAuth",
    "authtoken": "AuthToken",
    "context": "Context",
    "ip_blacklist": "IpBlacklist",
}
FILTERS = tuple(CLASSES)


def registered(group: str) -> dict[str, metadata.EntryPoint]:
    eps = metadata.entry_points(group=group)
    return {ep.name: ep for ep in eps if ep.dist is not None and ep.dist.name == "middleware_kit"}


def filter_class(name: str) -> type:
    return getattr(importlib.import_module(f"middleware_kit.{name}"), CLASSES[name])  # type: ignore[no-any-return]


def test_the_public_names_are_registered() -> None:
    assert set(registered("paste.filter_factory")) == set(FILTERS)
    assert set(registered("paste.composite_factory")) == {"pipeline"}
    assert set(registered("paste.app_factory")) == {"demo"}


def load_filter(tmp_path: Path, filter_section: str) -> object:
    ini = tmp_path / "one.ini"
    ini.write_text(
        f"[pipeline:main]\npipeline = subject demo\n\n[filter:subject]\n{filter_section}\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    return loadapp(f"config:{ini}")


@pytest.mark.parametrize("name", FILTERS)
def test_filter_loads_by_egg_name(tmp_path: Path, name: str) -> None:
    app = load_filter(tmp_path, f"use = egg:middleware_kit#{name}")
    assert callable(app)


@pytest.mark.parametrize("name", FILTERS)
def test_filter_loads_by_class_factory(tmp_path: Path, name: str) -> None:
    cls = filter_class(name)
    app = load_filter(
        tmp_path, f"paste.filter_factory = middleware_kit.{name}:{cls.__name__}.factory"
    )
    assert isinstance(app, cls)


@pytest.mark.parametrize("name", FILTERS)
def test_entry_point_and_classmethod_are_one_function(name: str) -> None:
    entry_point = registered("paste.filter_factory")[name]
    assert entry_point.value == f"middleware_kit.{name}:filter_factory"
    loaded = entry_point.load()
    cls = filter_class(name)
    assert loaded.__func__ is cls.factory.__func__
    assert loaded.__self__ is cls


def test_demo_app_and_pipeline_composite_load(tmp_path: Path) -> None:
    ini = tmp_path / "composite.ini"
    ini.write_text(
        "[composite:main]\nuse = egg:middleware_kit#pipeline\nkeystone = demo\n\n"
        "[app:demo]\nuse = egg:middleware_kit#demo\n"
    )
    response = webob.Request.blank("/cats").get_response(loadapp(f"config:{ini}"))
    assert response.json == {"cats": []}
