"""modjax.runs.results: results markdown that keeps its reading; atomic CSV."""

import csv

import pytest

from modjax.runs import results


def test_write_markdown_keeps_the_reading_section(tmp_path):
    path = tmp_path / "sub" / "table.md"
    results.write_markdown(path, "# Table\n| a | 1 |\n")
    assert path.read_text() == "# Table\n| a | 1 |\n"
    path.write_text(path.read_text() + "\n## Reading\nThe gap is noise.\n\nMore.\n")
    results.write_markdown(path, "# Table\n| a | 2 |\n")
    assert path.read_text() == "# Table\n| a | 2 |\n\n## Reading\nThe gap is noise.\n\nMore.\n"
    results.write_markdown(path, "# Table\n| a | 3 |\n")  # kept once, not appended again
    assert path.read_text().count("## Reading") == 1 and "| a | 3 |" in path.read_text()


def test_write_csv_round_trips_and_refuses_no_rows(tmp_path):
    rows = [{"model": "vgg16", "mean": 0.5, "values": "0.4 0.6"}, {"model": "mlp", "mean": None}]
    results.write_csv(tmp_path / "r.csv", rows)
    back = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert back == [
        {"model": "vgg16", "mean": "0.5", "values": "0.4 0.6"},
        {"model": "mlp", "mean": "", "values": ""},
    ]
    assert not list(tmp_path.glob(".r.csv.tmp-*"))  # no temporary left behind
    with pytest.raises(ValueError, match="no rows"):
        results.write_csv(tmp_path / "empty.csv", [])
