r"""A data set's rows -> the rows training reads: columns renamed, the gold answer, the prompt chat.

Every row keeps its columns (the rewards read them: `nums`, `target`, `answer`, ...) and gains
`messages`, the prompt chat ([system,] user). A malformed row is a `DataError` that names the
file, the line (of a JSON-lines file, as an editor numbers them) or row (1-based) and the column.
Rows are never dropped silently: with `data.bad_rows: skip` malformed rows are left out, and with
`data.skip_unboxed` rows without a `\boxed{}` answer; either way they are counted and printed.
"""

from __future__ import annotations

from system.data.prompts import PROMPT_FORMATS, template_fields, template_text
from system.rewards.extract import boxed_content

# Where a row's prompt is read from when no template is configured, in this order.
PROMPT_COLUMNS = ("messages", "prompt", "problem", "question")
# data.bad_rows: what a malformed row does to the run (BadRows)
BAD_ROWS = ("stop", "skip")


class DataError(ValueError):
    """A data set or row the user must fix; the message names the file, row and column."""


class BadRows:
    """A data set's malformed rows, by `data.bad_rows`: stop = the first one's DataError ends the load;
    skip = each is left out and its place kept, and `report` prints them (a typo in one row of a large
    file should not cost the run, but neither should it pass unseen)."""

    def __init__(self, origin: str, policy: str = "stop"):
        if policy not in BAD_ROWS:
            raise DataError(f"data.bad_rows must be one of {list(BAD_ROWS)}, got {policy!r}")
        self.origin, self.skip = origin, policy == "skip"
        self.places: list[str] = []  # the skipped rows' places ("line 4"), in the data set's order
        self.first = ""  # the first skipped row's error

    def found(self, error: DataError, place: str) -> None:
        if not self.skip:
            raise error
        self.places.append(place)
        self.first = self.first or str(error)

    def report(self, kept: int) -> None:
        """Print what was skipped; an error when that was every row."""
        if not self.places:
            return
        if not kept:
            raise DataError(f"every row of {self.origin} is malformed (data.bad_rows=skip); the first: {self.first}")
        shown = ", ".join(self.places[:20]) + (", ..." if len(self.places) > 20 else "")
        print(f"data: skipped {len(self.places)} malformed rows of {self.origin} (data.bad_rows=skip), "
              f"{kept} kept: {shown}; the first: {self.first}", flush=True)


class Where:
    """A row's place, for error messages: the file, the line or row (1-based: "line 4", "row 3") and a
    column by the name the data set gives it."""

    def __init__(self, origin: str, place: str, columns: dict[str, str]):
        self.origin, self.place = origin, place
        self.source_of = {target: source for source, target in columns.items()}

    def __str__(self) -> str:
        return f"{self.origin}, {self.place}"

    def column(self, name: str) -> str:
        source = self.source_of.get(name)
        return f"{self}, column '{source}' (read as '{name}')" if source else f"{self}, column '{name}'"


def prepare_rows(rows: list[dict], cfg, origin: str, default_template: str = "", places: list[str] | None = None,
                 bad: BadRows | None = None) -> list[dict]:
    """`rows` (from `origin`, a file or generator name) made ready for training (cfg: DataConfig).
    `places`: each row's ("line 4"; by default "row <n>"); `bad`: where malformed rows go (else: raised)."""
    if cfg.prompt_format not in PROMPT_FORMATS:
        raise DataError(f"data.prompt_format must be one of {list(PROMPT_FORMATS)}, "
                        f"got {cfg.prompt_format!r}")
    if cfg.prompt_format == "base" and cfg.system_prompt:
        raise DataError("data.system_prompt is for prompt_format chat: the base template's first lines play its part")
    targets = list(cfg.columns.values())
    if len(set(targets)) < len(targets):
        raise DataError(f"data.columns maps two columns to the same name: {dict(cfg.columns)}")
    template = cfg.prompt_template or default_template
    out, unboxed = [], 0
    for number, raw in enumerate(rows, 1):
        place = places[number - 1] if places else f"row {number}"
        try:
            row = prepare_row(raw, cfg, template, Where(origin, place, cfg.columns))
        except DataError as error:
            if bad is None:
                raise
            bad.found(error, place)
            continue
        if row is None:
            unboxed += 1
        else:
            out.append(row)
    if unboxed:
        print(f"data: skipped {unboxed} of {len(rows)} rows of {origin} without a \\boxed{{}} answer in column "
              f"'{cfg.answer_from_boxed}' (data.skip_unboxed)", flush=True)
    return out


def prepare_row(raw: dict, cfg, template: str, where: Where) -> dict | None:
    """One row made ready for training; None for a row without a boxed answer that data.skip_unboxed skips."""
    row = rename_columns(raw, cfg.columns, where)
    if cfg.answer_from_boxed:
        gold = boxed_gold(row, cfg.answer_from_boxed, where, cfg.skip_unboxed)
        if gold is None:
            return None
        row["answer"] = gold
    row["messages"] = prompt_chat(row, template, cfg.system_prompt, where)
    if cfg.prompt_format == "base" and [m["role"] for m in row["messages"]] != ["user"]:
        raise DataError(f"{where.column('messages')}: the base prompt format takes one user turn, "
                        f"got the roles {[m['role'] for m in row['messages']]}")
    return row


def rename_columns(row: dict, columns: dict[str, str], where: Where) -> dict:
    """The row with its columns renamed by `columns` (dataset name -> name read)."""
    for source, target in columns.items():
        if source not in row:
            raise DataError(f"{where}: no column '{source}' to rename to '{target}' (data.columns); "
                            f"the row has {sorted(row)}")
        if target in row and target not in columns:
            raise DataError(f"{where}: renaming column '{source}' to '{target}' would overwrite the row's own "
                            f"'{target}' (data.columns)")
    renamed = {k: v for k, v in row.items() if k not in columns}
    renamed.update({target: row[source] for source, target in columns.items()})
    return renamed


def boxed_gold(row: dict, column: str, where: Where, skip: bool) -> str | None:
    r"""The last `\boxed{}` of `row[column]`; None (when `skip`) or an error if it has none."""
    if column not in row:
        raise DataError(f"{where}: no column '{column}' (data.answer_from_boxed); the row has {sorted(row)}")
    if column != "answer" and "answer" in row:
        raise DataError(f"{where}: the row has an 'answer' column already; data.answer_from_boxed='{column}' "
                        "would replace it (rename it with data.columns, or leave answer_from_boxed empty)")
    text = row[column]
    if not isinstance(text, str):
        raise DataError(f"{where.column(column)}: expected text with a \\boxed{{}} answer, "
                        f"got {type(text).__name__}")
    gold = boxed_content(text)
    if gold:
        return gold
    if skip:
        return None
    raise DataError(f"{where.column(column)}: no \\boxed{{...}} answer (set data.skip_unboxed=true to skip "
                    f"such rows): {text[-80:]!r}")


def prompt_chat(row: dict, template: str, system_prompt: str | None, where: Where) -> list[dict]:
    """The prompt chat of a row: the template filled from its columns, else the first prompt column."""
    if template:
        text = template_text(template)
        missing = [c for c in template_fields(text) if c not in row]
        if missing:
            raise DataError(f"{where}: missing column(s) {missing} needed by the prompt template")
        chat = [{"role": "user", "content": text.format(**row)}]
    else:
        column = next((c for c in PROMPT_COLUMNS if c in row), None)
        if column is None:
            raise DataError(f"{where}: no prompt: the row needs one of the columns {list(PROMPT_COLUMNS)} "
                            f"(rename one with data.columns) or data.prompt_template; it has {sorted(row)}")
        value = row[column]
        chat = [{"role": "user", "content": value}] if isinstance(value, str) else checked_chat(value, where, column)
    if system_prompt and chat[0]["role"] != "system":
        chat = [{"role": "system", "content": system_prompt}] + chat
    return chat


def checked_chat(value, where: Where, column: str) -> list[dict]:
    """A column's chat (a list of {role, content} with text content) that ends with the user's turn."""
    if not isinstance(value, list) or not value or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        raise DataError(f"{where.column(column)}: expected text or a chat (a list of {{role, content}} "
                        f"with text content), got {str(value)[:80]!r}")
    if value[-1]["role"] != "user":
        raise DataError(f"{where.column(column)}: the chat ends with a '{value[-1]['role']}' turn; a prompt "
                        "ends with the user's (to build it from other columns, set data.prompt_template, "
                        "e.g. '{problem}')")
    return [{"role": m["role"], "content": m["content"]} for m in value]
