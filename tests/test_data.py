"""Data loading: generated splits never overlap, malformed rows are errors that name the row."""

import json

import pytest

from system.config import DataConfig
from system.data import DataError, load_splits
from system.data.sampler import PromptSampler


def test_generated_eval_rows_never_enter_training():
    train, held_out = load_splits(DataConfig(source="countdown", num_train=500, num_eval=50, max_number=20,
                                             min_numbers=2, max_numbers=2))
    assert len(train) == 500 and len(held_out) == 50
    key = lambda r: (tuple(r["nums"]), r["target"])  # noqa: E731
    assert not {key(r) for r in held_out} & {key(r) for r in train}
    assert str(held_out[0]["target"]) in held_out[0]["messages"][-1]["content"]


def test_too_small_a_task_space_is_an_error():
    with pytest.raises(DataError, match="distinct tasks for num_eval=50"):
        load_splits(DataConfig(source="countdown", num_eval=50, max_number=2, min_numbers=2, max_numbers=2))


def test_file_rows_with_missing_columns_name_the_row(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"question": "1+1", "answer": "2"}] * 3 + [{"answer": "3"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"row 4: missing column\(s\) \['question'\]"):
        load_splits(DataConfig(source=str(path), num_eval=1, prompt_template="math"))


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "1+1", "answer": "2"}\n{"question": \n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        load_splits(DataConfig(source=str(path), num_eval=1, prompt_template="math"))


def test_sampler_state_continues_with_the_next_unseen_batch():
    rows = [{"i": i} for i in range(10)]
    a = PromptSampler(rows, 4, seed=3)
    seen = [a.next_batch() for _ in range(3)]  # crosses an epoch boundary (10 rows, batches of 4)
    b = PromptSampler(rows, 4, seed=3)
    b.load_state(PromptSampler(rows, 4, seed=3).state())
    for _ in range(2):
        b.next_batch()
    b2 = PromptSampler(rows, 4, seed=3)
    b2.load_state(b.state())
    assert b2.next_batch() == seen[2]
