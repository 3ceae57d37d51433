"""The one registry pattern: named entries in order, clear errors, lazy built-ins."""

from __future__ import annotations

import sys

import pytest

from earlyia.errors import ConfigError
from earlyia.registry import Registry


def test_entries_in_registration_order_and_lookup():
    reg = Registry("colour")
    reg.register("red", 1)
    reg.register("blue", 2)
    assert reg.names() == ["red", "blue"] == list(reg)
    assert reg.get("blue") == 2 and "red" in reg and "green" not in reg and len(reg) == 2
    assert reg.items() == [("red", 1), ("blue", 2)]
    assert reg.name_of(reg.get("red")) == "red"


def test_unknown_name_names_the_kind_and_the_choices():
    reg = Registry("colour")
    reg.register("red", 1)
    with pytest.raises(ConfigError, match=r"unknown colour 'green'; choose one of: red"):
        reg.get("green")
    with pytest.raises(ConfigError, match="colour name must be a string"):
        reg.get(3)


def test_a_taken_name_needs_replace():
    reg = Registry("colour")
    entry = object()
    reg.register("red", entry)
    reg.register("red", entry)  # the same entry again: a no-op
    with pytest.raises(ConfigError, match=r"'red' is already registered.*replace=True"):
        reg.register("red", object())
    reg.register("blue", 2)
    reg.register("red", 3, replace=True)
    assert reg.items() == [("red", 3), ("blue", 2)]
    assert reg.unregister("red") == 3 and reg.names() == ["blue"]


def test_check_refuses_wrong_entries():
    def check(name, entry):
        if not callable(entry):
            raise ConfigError(f"{name!r} is not callable")

    reg = Registry("hook", check=check)
    with pytest.raises(ConfigError, match="'x' is not callable"):
        reg.register("x", 3)
    assert reg.names() == []


def test_lazy_builtins_are_imported_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "eia_lazy_plugin.py").write_text(
        "from tests_registry_target import REG\nREG.register('plug', 42)\n"
    )
    (tmp_path / "eia_lazy_silent.py").write_text("")
    target = type(sys)("tests_registry_target")
    target.REG = Registry("plugin", lazy={"plug": "eia_lazy_plugin", "silent": "eia_lazy_silent"})
    monkeypatch.setitem(sys.modules, "tests_registry_target", target)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = target.REG
    assert reg.names() == ["plug", "silent"] and "plug" in reg
    assert "eia_lazy_plugin" not in sys.modules
    assert reg.get("plug") == 42 and "eia_lazy_plugin" in sys.modules
    with pytest.raises(ConfigError, match="importing eia_lazy_silent did not register it"):
        reg.get("silent")
    monkeypatch.delitem(sys.modules, "eia_lazy_plugin")
    monkeypatch.delitem(sys.modules, "eia_lazy_silent", raising=False)
