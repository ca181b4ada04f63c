"""The README's methods table is the registry's (tools/readme_methods.py)."""

import importlib.util
import pathlib

import pytest

pytestmark = pytest.mark.backend_independent

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "readme_methods.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("readme_methods", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_methods_table_is_current():
    tool = load_tool()
    text = tool.README.read_text()
    assert tool.with_table(text) == text, "run: python tools/readme_methods.py"


def test_table_lists_every_method_once():
    from keras_mim.models import METHODS

    table = load_tool().methods_table()
    for name, spec in METHODS.items():
        assert table.count(f"| `{name}` |") == 1 and spec.model.__name__ in table
