"""Data: every source format, column renames, the boxed gold answer, chat vs base prompts, the
generators (solvable by construction, deterministic, held-out rows never in train), and errors that
name the file, row and column."""

import json
import random

import pytest

from system.config.grpo import ConfigError, DataConfig, load_config
from system.data import DataError, held_out_tasks, load_splits, task_key
from system.data.generators import countdown_tasks
from system.data.prompts import BASE_TEMPLATE, encode_prompt
from system.data.sampler import PromptSampler
from system.envs.twenty_four import solve
from system.rewards.expression import evaluate_expression, numbers_used

# NuminaMath-TIR's layout: the solution (chain of thought) ends in a boxed answer; `messages` holds
# the problem AND the solution, so it must never be the prompt.
NUMINA = [
    {"problem": f"What is {i} divided by {2 * i}?",
     "solution": f"Halving: {i}/{2 * i} = \\boxed{{\\frac{{1}}{{2}}}}",
     "messages": [{"role": "user", "content": f"What is {i} divided by {2 * i}?"},
                  {"role": "assistant", "content": "Halving... \\boxed{\\frac{1}{2}}"}]}
    for i in range(1, 5)
]
NUMINA_CFG = dict(num_eval=1, columns={"problem": "question"}, answer_from_boxed="solution",
                  prompt_template="math")


def write_dataset(kind: str, rows: list[dict], tmp_path) -> str:
    """`rows` written by `datasets` (or pyarrow) as one kind of source; returns data.source."""
    import pyarrow as pa
    from datasets import Dataset, DatasetDict

    data = Dataset.from_list(rows)
    path = tmp_path / {"jsonl": "d.jsonl", "json": "d.json", "parquet": "d.parquet"}.get(kind, "d.arrow")
    if kind == "jsonl":
        data.to_json(path)
    elif kind == "json":  # one JSON list of objects
        path.write_text(json.dumps(rows, indent=1))
    elif kind == "parquet":
        data.to_parquet(path)
    elif kind == "arrow":  # the Arrow stream file save_to_disk writes
        data.save_to_disk(tmp_path / "saved")
        [arrow] = (tmp_path / "saved").glob("*.arrow")
        arrow.rename(path)
    elif kind == "arrow_ipc_file":
        with pa.ipc.new_file(path, data.data.table.schema) as writer:
            writer.write_table(data.data.table)
    else:
        path = tmp_path / "d"
        if kind == "saved_dir":
            data.save_to_disk(path)
        else:  # saved_dict_dir
            DatasetDict({"test": Dataset.from_list(rows[:1]), "train": data}).save_to_disk(path)
    return str(path)


@pytest.mark.parametrize("kind",
                         ["jsonl", "json", "parquet", "arrow", "arrow_ipc_file", "saved_dir",
                          "saved_dict_dir"])
def test_every_source_format_gives_the_same_rows(tmp_path, kind):
    train, held_out = load_splits(DataConfig(source=write_dataset(kind, NUMINA, tmp_path), **NUMINA_CFG))
    assert [r["question"] for r in held_out + train] == [r["problem"] for r in NUMINA]
    for row in held_out + train:
        assert "problem" not in row and row["answer"] == "\\frac{1}{2}"
        [user] = row["messages"]
        assert user["role"] == "user" and user["content"].startswith(row["question"] + "\nThink step by step")
        assert "Halving" not in user["content"]  # the solution is never shown to the model


def test_a_datasetdict_folder_takes_its_split_by_name(tmp_path):
    source = write_dataset("saved_dict_dir", NUMINA, tmp_path)
    train, _ = load_splits(DataConfig(source=source, split="test", num_eval=0, prompt_template="{problem}"))
    assert [r["messages"][0]["content"] for r in train] == [NUMINA[0]["problem"]]
    with pytest.raises(DataError, match=r"no split 'validation' \(data.split\); it has \['test', 'train'\]"):
        load_splits(DataConfig(source=source, split="validation", **NUMINA_CFG))
    with pytest.raises(DataError, match="a file has no splits"):
        load_splits(DataConfig(source=write_dataset("parquet", NUMINA, tmp_path), split="test", **NUMINA_CFG))


def test_sources_that_are_not_data_sets_are_named(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*nope.parquet"):
        load_splits(DataConfig(source=str(tmp_path / "nope.parquet")))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="bad.parquet: not a readable parquet file"):
        load_splits(DataConfig(source=str(tmp_path / "bad.parquet")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="'.*empty': not a data set folder"):
        load_splits(DataConfig(source=str(tmp_path / "empty")))
    with pytest.raises(DataError, match="'countdwon': not a generator, a local file or folder"):
        load_splits(DataConfig(source="countdwon"))


def test_column_renames_and_their_errors_name_file_row_and_column(tmp_path):
    rows = [{"q": f"{i} + {i}", "a": str(2 * i)} for i in range(4)]
    source = write_dataset("parquet", rows, tmp_path)
    train, held_out = load_splits(DataConfig(source=source, num_eval=1,
                                             columns={"q": "question", "a": "answer"}))
    assert held_out[0] == {"question": "0 + 0", "answer": "0",
                           "messages": [{"role": "user", "content": "0 + 0"}]}
    assert [r["answer"] for r in train] == ["2", "4", "6"]

    rows[2] = {"a": "4"}
    source = write_dataset("parquet", rows, tmp_path)  # parquet fills the missing value with None
    with pytest.raises(DataError,
                       match=r"d.parquet, row 3, column 'q' \(read as 'prompt'\): "
                             r"expected text or a chat.*got 'None'"):
        load_splits(DataConfig(source=source, num_eval=1, columns={"q": "prompt"}))
    source = tmp_path / "own.jsonl"  # by hand: datasets would write the missing value as null
    source.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError,
                       match=r"own.jsonl, line 3: no column 'q' to rename to 'question' \(data.columns\)"):
        load_splits(DataConfig(source=str(source), num_eval=1, columns={"q": "question"}))
    with pytest.raises(DataError,
                       match=r"line 1: renaming column 'q' to 'a' would overwrite the row's own 'a'"):
        load_splits(DataConfig(source=str(source), num_eval=1, columns={"q": "a"}))


def test_columns_come_from_yaml_and_a_recipe_replaces_the_base_map(tmp_path):
    (tmp_path / "base.yaml").write_text("data: {columns: {problem: question, solution: answer}}\n")
    (tmp_path / "run.yaml").write_text("base: base.yaml\ndata: {columns: {prompt_text: prompt}}\n")
    assert load_config(str(tmp_path / "run.yaml")).data.columns == {"prompt_text": "prompt"}
    with pytest.raises(ConfigError, match="'data.prompt_format' must be one of \\['chat', 'base'\\]"):
        load_config(None, ["data.prompt_format=bse"])


@pytest.mark.parametrize("solution, gold", [
    ("so x = \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),  # nested braces
    # the last one counts
    ("first \\boxed{3}, no wait: \\boxed{\\sqrt{\\frac{4}{9}}}", "\\sqrt{\\frac{4}{9}}"),
    ("\\fbox{42} is the answer", "42"),
    ("\\boxed{1} then \\fbox{ {2}+{3} }", "{2}+{3}"),
])
def test_the_gold_answer_is_the_last_boxed_value(tmp_path, solution, gold):
    source = write_dataset("jsonl", [{"problem": "p", "solution": solution}] * 2, tmp_path)
    _, [row] = load_splits(DataConfig(source=source, num_eval=1, answer_from_boxed="solution"))
    assert row["answer"] == gold and row["messages"] == [{"role": "user", "content": "p"}]


def test_a_solution_without_a_boxed_answer_is_an_error_or_skipped_and_counted(tmp_path, capsys):
    rows = [{"problem": "p", "solution": "\\boxed{1}"}] * 3 + [{"problem": "q", "solution": "it is 2"}]
    source = write_dataset("parquet", rows, tmp_path)
    with pytest.raises(DataError, match=r"d.parquet, row 4, column 'solution': no \\boxed\{...\} answer"):
        load_splits(DataConfig(source=source, num_eval=1, answer_from_boxed="solution"))
    train, _ = load_splits(DataConfig(source=source, num_eval=1, answer_from_boxed="solution",
                                      skip_unboxed=True))
    assert len(train) == 2 and "skipped 1 of 4 rows of" in capsys.readouterr().out
    with pytest.raises(DataError, match="line 1: the row has an 'answer' column already"):
        load_splits(DataConfig(source=write_dataset("jsonl",
                                                    [{"problem": "p", "answer": "1",
                                                      "solution": "\\boxed{1}"}]
                                                    * 2, tmp_path), num_eval=1, answer_from_boxed="solution"))


def test_a_messages_chat_is_the_prompt_with_the_system_prompt_added_if_absent(tmp_path):
    chats = [[{"role": "user", "content": "Hi"}],
             [{"role": "system", "content": "Own."}, {"role": "user", "content": "Yo"}]]
    source = write_dataset("jsonl", [{"messages": c, "answer": "1"} for c in chats], tmp_path)
    train, held_out = load_splits(DataConfig(source=source, num_eval=1, system_prompt="Be brief."))
    assert held_out[0]["messages"] == [{"role": "system", "content": "Be brief."}, chats[0][0]]
    assert train[0]["messages"] == chats[1]

    with pytest.raises(DataError,
                       match=r"d.jsonl, line 1, column 'messages': the chat ends with a 'assistant' turn"):
        load_splits(DataConfig(source=write_dataset("jsonl", NUMINA, tmp_path), num_eval=1))
    bad = [{"messages": [{"role": "user", "content": "ok"}]},
           {"messages": [{"role": "user", "text": "no content"}]}]
    with pytest.raises(DataError,
                       match=r"line 2, column 'messages': "
                             r"expected text or a chat \(a list of \{role, content\}"):
        load_splits(DataConfig(source=write_dataset("jsonl", bad, tmp_path), num_eval=1))
    with pytest.raises(DataError,
                       match=r"line 1: no prompt: the row needs one of the columns \['messages', 'prompt'"):
        load_splits(DataConfig(source=write_dataset("jsonl", [{"text": "x"}] * 2, tmp_path), num_eval=1))


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_chat_and_base_prompt_ids(tokenizer):
    chat = [{"role": "user", "content": "Make 7 from [3, 4]"}]
    ids = encode_prompt(tokenizer, chat, "<think>", "chat")
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert ids == tokenizer(text + "<think>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids).endswith("<|im_start|>user\nMake 7 from [3, 4]<|im_end|>\n"
                                          "<|im_start|>assistant\n<think>")

    base = encode_prompt(tokenizer, chat, " I", "base")
    expected = BASE_TEMPLATE.format(prompt="Make 7 from [3, 4]") + " I"
    assert tokenizer.decode(base) == expected and "<|im_start|>" not in tokenizer.decode(base)
    assert expected.endswith("User: Make 7 from [3, 4]\n"
                             "Assistant: Let me solve this step by step.\n<think> I")

    no_template = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    no_template.chat_template = None  # a base model's tokenizer
    with pytest.raises(ValueError, match="has no chat template: set data.prompt_format=base"):
        encode_prompt(no_template, chat, "", "chat")
    assert encode_prompt(no_template, chat, " I", "base") == base


def test_base_format_takes_one_user_turn(tmp_path):
    with pytest.raises(DataError, match="data.system_prompt is for prompt_format chat"):
        load_splits(DataConfig(source="countdown", num_train=4, num_eval=2, prompt_format="base",
                               system_prompt="S"))
    source = write_dataset("jsonl",
                           [{"messages": [{"role": "system", "content": "S"},
                                          {"role": "user", "content": "U"}]}]
                           * 2, tmp_path)
    with pytest.raises(DataError,
                       match=r"line 1, column 'messages': the base prompt format takes one user turn"):
        load_splits(DataConfig(source=source, num_eval=1, prompt_format="base"))


@pytest.mark.parametrize("source", ["countdown", "twenty_four"])
def test_generated_eval_tasks_never_enter_training(source):
    train, held_out = load_splits(DataConfig(source=source, num_train=500, num_eval=50, max_number=20,
                                             min_numbers=2, max_numbers=2))
    assert len(train) == 500 and len(held_out) == 50
    # the same numbers in another order are the same task
    assert not {task_key(r) for r in held_out} & {task_key(r) for r in train}
    assert task_key({"nums": [3, 8], "target": 24}) == task_key({"nums": [8, 3], "target": 24})
    assert str(held_out[0]["target"]) in held_out[0]["messages"][-1]["content"]


def test_skip_gives_a_later_stage_problems_no_earlier_stage_had(tmp_path):
    """A pipeline's rejection-sampling stage after a teacher's 300 problems: skip=300 takes none of them
    (a generated task that comes again later is skipped too), the same held-out rows, and nothing for a
    file with too few rows."""
    first, held_out = load_splits(DataConfig(source="countdown", num_train=300, num_eval=20, max_number=12))
    later, held_out_later = load_splits(DataConfig(source="countdown", num_train=100, num_eval=20,
                                                   max_number=12, skip=300))
    assert len(later) == 100 and held_out_later == held_out
    # bench/heldout.py's
    public = held_out_tasks(DataConfig(source="countdown", num_eval=20, max_number=12, skip=300))
    assert [(r["nums"], r["target"]) for r in public] == [(r["nums"], r["target"]) for r in held_out]
    assert not {task_key(r) for r in first} & {task_key(r) for r in later + held_out}
    assert load_splits(DataConfig(source="countdown", num_train=300, num_eval=20, max_number=12))[0] == first
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"problem": f"{i} + 1", "answer": str(i + 1)}) + "\n"
                            for i in range(10)))
    train, _ = load_splits(DataConfig(source=str(path), num_eval=2, skip=5))
    assert [r["problem"] for r in train] == ["7 + 1", "8 + 1", "9 + 1"]
    with pytest.raises(DataError, match="none left for training after num_eval=2 and skip=8"):
        load_splits(DataConfig(source=str(path), num_eval=2, skip=8))
    with pytest.raises(DataError, match="data.skip=-1"):
        load_splits(DataConfig(source="countdown", skip=-1))


def test_twenty_four_tasks_are_solvable_and_deterministic_per_seed():
    cfg = DataConfig(source="twenty_four", num_train=200, num_eval=20)
    train, held_out = load_splits(cfg)
    for row in train + held_out:
        assert len(row["nums"]) == 4 and all(1 <= n <= 13 for n in row["nums"]) and row["target"] == 24
        witness = solve(row["nums"], 24)
        assert witness and evaluate_expression(witness) == 24
        assert sorted(numbers_used(witness)) == sorted(row["nums"])
    assert load_splits(cfg) == (train, held_out)
    assert load_splits(DataConfig(source="twenty_four", num_train=200, num_eval=20, seed=1))[0] != train


def test_countdown_with_six_numbers_is_reachable_by_construction():
    cfg = DataConfig(source="countdown", min_numbers=6, max_numbers=6, max_number=100, max_target=1000,
                     num_train=100, num_eval=10)
    train, _ = load_splits(cfg)
    tasks = countdown_tasks(random.Random(cfg.seed), cfg)  # the same stream, with each task's witness
    for row, (nums, target, witness) in zip(train, tasks):
        assert (row["nums"], row["target"]) == (nums, target) and len(nums) == 6 and 1 <= target <= 1000
        assert evaluate_expression(witness) == target and sorted(numbers_used(witness)) == sorted(nums)
    mixed, _ = load_splits(DataConfig(min_numbers=3, max_numbers=6, num_eval=50))
    assert {len(r["nums"]) for r in mixed} == {3, 4, 5, 6}
    with pytest.raises(DataError, match="data.min_numbers=5, data.max_numbers=4"):
        load_splits(DataConfig(min_numbers=5, max_numbers=4))


def test_too_small_a_task_space_is_an_error():
    with pytest.raises(DataError, match="distinct tasks for num_eval=50"):
        load_splits(DataConfig(source="countdown", num_eval=50, max_number=2, min_numbers=2, max_numbers=2))


def test_file_rows_with_missing_columns_name_the_row(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"question": "1+1", "answer": "2"}] * 3 + [{"answer": "3"}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match=r"line 4: missing column\(s\) \['question'\]"):
        load_splits(DataConfig(source=str(path), num_eval=1, prompt_template="math"))


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "1+1", "answer": "2"}\n{"question": \n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        load_splits(DataConfig(source=str(path), num_eval=1, prompt_template="math"))
    (tmp_path / "d.json").write_text('[{"question": "1+1"}, ["not", "an", "object"]]')
    with pytest.raises(DataError, match="d.json, row 2: expected a JSON object, got list"):
        load_splits(DataConfig(source=str(tmp_path / "d.json"), num_eval=1))


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
