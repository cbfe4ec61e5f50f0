"""Bad input at the edges of a run (docs/reliability.md, "Bad input at the edges"): a reward that returns
what is no score, a data file with malformed rows, a call to the agents' endpoint that asks too much, and a
config that asks for more devices than the cluster has."""

import json
import math
import re

import numpy as np
import pytest

from system.config.grpo import ConfigError, DataConfig, RewardConfig, load_config
from system.data import DataError, load_splits
from system.rewards import RewardError, RewardScorer
from system.rewards.scorer import run_reward

# A reward that returns what is no score


def returning(value):
    """A reward that scores the second completion `value` and the others 1.0."""
    return lambda completions, **columns: [value if i == 1 else 1.0 for i in range(len(completions))]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1.0", [1.0], {"score": 1}, object()])
def test_a_score_that_is_no_finite_number_is_an_error_naming_the_reward_the_value_and_the_sample(value):
    columns = {"answer": ["1", "2", "3"]}
    with pytest.raises(RewardError) as error:
        run_reward("odd", returning(value), ["a", "b", "c"], columns, first=6)
    message = str(error.value)
    assert f"reward 'odd' returned {repr(value)[:40]}" in message
    assert "for sample 7 of the batch, columns {answer: '2'}, completion 'b'" in message
    assert "a score is a finite number, or None when the sample cannot be scored" in message


def test_none_and_any_finite_number_are_scores():
    scores = run_reward("fine", lambda completions, **_: [None, np.float32(0.5), 2, True], list("abcd"), {})
    assert scores == [None, 0.5, 2.0, 1.0] and all(type(s) in (float, type(None)) for s in scores)


@pytest.mark.parametrize("returned, said", [(0.5, "a float (0.5)"), ([1.0], "1 scores ([1.0])"),
                                            ("11", "a str (11)")])
def test_a_reward_that_returns_no_list_of_one_score_per_completion_is_an_error(returned, said):
    with pytest.raises(RewardError, match=f"reward 'odd' returned {re.escape(said)} for 2 completions "
                                          r"\(samples 0-1\): a reward returns a list of one score per completion"):
        run_reward("odd", lambda completions, **_: returned, ["a", "b"], {})


def test_the_driver_scorer_never_lets_a_nan_reach_the_combined_reward():
    scorer = RewardScorer(RewardConfig(functions={"tests.test_bad_input_edges:nan_reward": 1.0}, num_workers=0))
    with pytest.raises(RewardError, match="reward 'tests.test_bad_input_edges:nan_reward' returned nan"):
        scorer.score(["a", "b"], {"answer": ["1", "2"]})


def nan_reward(completions, **columns):
    return [math.nan] * len(completions)


# A data file with malformed rows

GOOD = {"question": "1+1", "answer": "2"}


def jsonl_with_bad_lines(tmp_path):
    """A JSON-lines file with 9 good rows and, at the lines an editor shows, bad JSON (4), a row that is no
    object (9) and one without a prompt (12); line 6 is blank and line 2's text holds a line separator."""
    lines = [json.dumps(GOOD)] * 13
    lines[1] = json.dumps({"question": "one\u2028two", "answer": "2"}, ensure_ascii=False)
    lines[3], lines[5], lines[8], lines[11] = '{"question": "1+', "", "[1, 2]", json.dumps({"answer": "3"})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_malformed_row_stops_the_load_naming_the_file_and_the_line_by_default(tmp_path):
    path = jsonl_with_bad_lines(tmp_path)
    with pytest.raises(DataError, match=f"{path}, line 4: not valid JSON"):
        load_splits(DataConfig(source=str(path), num_eval=1))
    path.write_text(path.read_text().replace('{"question": "1+\n', ""))  # fixed: the next one is named
    with pytest.raises(DataError, match=f"{path}, line 8: expected a JSON object, got list"):
        load_splits(DataConfig(source=str(path), num_eval=1))


def test_skip_leaves_out_only_the_malformed_rows_and_prints_their_lines(tmp_path, capsys):
    path = jsonl_with_bad_lines(tmp_path)
    train, held_out = load_splits(DataConfig(source=str(path), num_eval=1, bad_rows="skip"))
    assert len(held_out) + len(train) == 9 and held_out[0]["question"] == "1+1"
    assert train[0]["question"] == "one\u2028two"  # its line separator is no line break
    out = capsys.readouterr().out
    assert f"data: skipped 3 malformed rows of {path} (data.bad_rows=skip), 9 kept: line 4, line 9, line 12; " \
           f"the first: {path}, line 4: not valid JSON" in out


def test_skip_over_a_file_of_only_malformed_rows_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"not json\n\xff\xfe\n")
    with pytest.raises(DataError, match=f"every row of {path} is malformed \\(data.bad_rows=skip\\); the first: "
                                        f"{path}, line 1: not valid JSON"):
        load_splits(DataConfig(source=str(path), num_eval=0, bad_rows="skip"))

def test_a_line_that_is_no_utf8_text_is_a_malformed_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match=f"{path}, line 2: not UTF-8 text"):
        load_splits(DataConfig(source=str(path), num_eval=0))


@pytest.mark.parametrize("ext", ["parquet", "json"])
def test_rows_of_other_formats_are_named_by_row_and_skipped_alike(tmp_path, capsys, ext):
    import datasets

    rows = [GOOD, {"question": None, "answer": "2"}, GOOD, GOOD]
    path = tmp_path / f"d.{ext}"
    if ext == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        path.write_text(json.dumps(rows[:1] + ["no object"] + rows[2:]))
    with pytest.raises(DataError, match=f"{path}, row 2"):
        load_splits(DataConfig(source=str(path), num_eval=1))
    train, held_out = load_splits(DataConfig(source=str(path), num_eval=1, bad_rows="skip"))
    assert (len(train), len(held_out)) == (2, 1)
    assert f"skipped 1 malformed rows of {path} (data.bad_rows=skip), 3 kept: row 2;" in capsys.readouterr().out


def test_bad_rows_is_a_checked_choice():
    assert load_config(None, []).data.bad_rows == "stop"
    with pytest.raises(ConfigError, match="'data.bad_rows' must be one of"):
        load_config(None, ["data.bad_rows=ignore"])
