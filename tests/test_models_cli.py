"""`heartlab models`: every registered model class, its default sizes and forward MACs per beat, aligned."""

from __future__ import annotations

import pytest

import heartlab.models
from heartlab import cli
from heartlab.models import CNN2D, CNN2DPlus, Transformer1D
from heartlab.models_cli import forward_macs_per_beat, model_classes, summarize


def test_every_model_in_heartlab_models_is_listed():
    classes = model_classes()
    assert {cls.__name__ for cls in classes} == set(heartlab.models.__all__)
    assert all(cls is getattr(heartlab.models, cls.__name__) for cls in classes)


def test_forward_macs_are_counted_by_hand():
    # CNN2D on 16 x 12 = 192 pixels: 3x3 convolutions 1 -> 16, then three 16 -> 16, Linear(768, 16), Linear(16, 2)
    assert forward_macs_per_beat(CNN2D()) == 192 * 9 * 16 + 3 * 192 * 9 * 16 * 16 + 768 * 16 + 16 * 2
    # Transformer1D over 96 steps, width 128, 3 blocks: embedding, q/k/v and output projections, the two
    # feed-forward layers, attention scores and weighted sums (4 heads of 32), output layer
    per_block = 96 * 128 * 128 * (3 + 1 + 2) + 2 * 96 * 96 * 128
    assert forward_macs_per_beat(Transformer1D()) == 96 * 3 * 128 + 3 * per_block + 128 * 2


def test_summary_sizes_for_two_and_five_classes():
    summary = summarize(CNN2DPlus)
    assert summary.parameters == {2: 57_154, 5: 57_253}
    assert summary.input_view == "2d" and summary.module == "heartlab.models.cnn2d"


def test_models_command_prints_an_aligned_table(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header, rule, *rows = lines[: 2 + len(model_classes())]
    assert header.split()[:2] == ["model", "view"]
    assert set(rule) <= {"-", " "}
    assert [row.split()[0] for row in rows] == [cls.__name__ for cls in model_classes()]
    # every column starts where its header does, numbers end where theirs do
    starts = [i for i, char in enumerate(rule) if char == "-" and (i == 0 or rule[i - 1] == " ")]
    ends = [i for i, char in enumerate(rule) if char == "-" and (i + 1 == len(rule) or rule[i + 1] == " ")]
    for row in rows:
        assert row[starts[1] - 2 : starts[1]] == "  " and row[starts[1]] in "12"
        for column in (2, 3, 4):
            assert row[ends[column]] != " " and (ends[column] + 1 == len(row) or row[ends[column] + 1] == " ")
    transformer = next(row for row in rows if row.startswith("Transformer1D "))
    assert "299,522" in transformer and "299,909" in transformer and "35.43 M" in transformer


def test_heartlab_help_lists_the_models_command(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "list the model classes with their parameters and MACs per beat" in " ".join(capsys.readouterr().out.split())
