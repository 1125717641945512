import pytest

from viscy_utils.cli_utils import format_markdown_table, load_config


def test_markdown_table_from_mapping_with_title():
    text = format_markdown_table({"val_accuracy": 0.91234, "n_cells": 12}, title="Results")
    assert text.splitlines() == [
        "## Results",
        "",
        "| Metric | Value |",
        "|---------|--------|",
        "| Val Accuracy | 0.912 |",
        "| N Cells | 12 |",
    ]
    assert text.endswith("\n")


def test_markdown_table_from_records_fills_missing_keys():
    text = format_markdown_table([{"model": "a", "f1_score": 0.5}, {"model": "b"}])
    lines = text.splitlines()
    assert lines[0] == "| Model | F1 Score |"
    assert lines[1] == "|--------|-----------|"
    assert lines[2:] == ["| a | 0.500 |", "| b |  |"]


def test_markdown_table_custom_headers():
    text = format_markdown_table({"a": 1}, headers=["Name", "Count"])
    assert text.splitlines()[0] == "| Name | Count |"


def test_load_config(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("trainer:\n  max_epochs: 3\nmodel:\n  class_path: x.Y\n")
    assert load_config(path) == {"trainer": {"max_epochs": 3}, "model": {"class_path": "x.Y"}}
    (tmp_path / "empty.yml").write_text("")
    assert load_config(tmp_path / "empty.yml") == {}


def test_load_config_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.yml"):
        load_config(tmp_path / "missing.yml")
