"""Reading a data set's rows, as plain dicts, from wherever `data.source` points.

- a file: .jsonl / .json (JSON lines, or one JSON list of objects), .parquet, .arrow (the Arrow
  stream files `datasets` writes, or Arrow IPC files);
- a folder: one written by `datasets`' `save_to_disk` (a Dataset, or a DatasetDict: `split`
  picks one), or a folder of data files the way the hub lays them out;
- anything else: a hub dataset id, where a hub is reachable.

Files are read directly (no `datasets` cache copy of a large parquet file); a JSON syntax error
names its line, as an editor numbers them. A JSON-lines row that is no JSON object is malformed:
an error, or skipped and counted (`data.bad_rows`, rows.py's BadRows).
"""

from __future__ import annotations

import json
import os

from system.data.rows import BadRows, DataError

FILE_TYPES = (".jsonl", ".json", ".parquet", ".arrow")


def read_rows(source: str, split: str = "train") -> list[dict]:
    """Every row of the data set at `source` (a file, a folder or a hub id); a malformed one is an error."""
    return read_placed_rows(source, split, BadRows(source))[0]


def read_placed_rows(source: str, split: str, bad: BadRows) -> tuple[list[dict], list[str]]:
    """The rows of the data set at `source` and the place of each ("line 7" of a JSON-lines file, else
    "row 3"); the malformed ones go to `bad`."""
    ext = os.path.splitext(source)[1]
    if ext in FILE_TYPES or os.path.isfile(source):
        if not os.path.isfile(source):
            raise DataError(f"data file not found: {source}")
        if split != "train":
            raise DataError(f"{source}: a file has no splits (data.split={split!r} is for hub datasets and "
                            "saved DatasetDict folders)")
        if ext in (".jsonl", ".json"):
            return _read_json(source, bad)
        if ext in (".parquet", ".arrow"):
            return _numbered(_read_arrow_table(source, ext))
        raise DataError(f"{source}: unknown file type; data files end with {', '.join(FILE_TYPES)}")
    import datasets

    folder = os.path.isdir(source)
    saved = folder and any(os.path.exists(os.path.join(source, f)) for f in ("dataset_dict.json", "state.json"))
    try:
        data = datasets.load_from_disk(source) if saved else datasets.load_dataset(source, split=split)
    except Exception as e:  # noqa: BLE001 - whatever the reason (offline, unknown id, no data files): name the source
        what = "not a data set folder" if folder else ("not a generator, a local file or folder, or a data set "
                                                       "the hub serves here")
        raise DataError(f"data.source '{source}': {what} ({type(e).__name__}: {e})") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DataError(f"{source}: no split '{split}' (data.split); it has {list(data)}")
        data = data[split]
    elif saved and split != "train":
        raise DataError(f"{source}: a saved Dataset without splits (data.split={split!r} is for DatasetDicts)")
    return _numbered(data.to_list())


def _numbered(rows: list[dict]) -> tuple[list[dict], list[str]]:
    return rows, [f"row {number}" for number in range(1, len(rows) + 1)]


def _read_json(path: str, bad: BadRows) -> tuple[list[dict], list[str]]:
    """A JSON list of objects (one syntax error is the whole file's), or JSON lines, each parsed alone."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".json") and data.lstrip().startswith(b"["):
        try:
            items = json.loads(data)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        items, parse = [(f"row {number}", item) for number, item in enumerate(items, 1)], _object
    else:  # split at newlines only, as editors number lines (str.splitlines also splits at \u2028 and others)
        items = [(f"line {number}", line) for number, line in enumerate(data.split(b"\n"), 1) if line.strip()]
        parse = _parsed
    rows, places = [], []
    for place, item in items:
        try:
            rows.append(parse(item))
            places.append(place)
        except DataError as error:
            bad.found(DataError(f"{path}, {place}: {error}"), place)
    return rows, places


def _parsed(line: bytes) -> dict:
    try:
        return _object(json.loads(line.decode("utf-8")))  # bytes to json.loads would guess at UTF-16/32
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})") from None


def _object(row) -> dict:
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, got {type(row).__name__}")
    return row


def _read_arrow_table(path: str, ext: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if ext == ".parquet":
            return pq.read_table(path).to_pylist()
        with pa.memory_map(path) as f:
            try:
                return pa.ipc.open_stream(f).read_all().to_pylist()
            except pa.ArrowInvalid:  # not a stream: an Arrow IPC (Feather v2) file
                f.seek(0)
                return pa.ipc.open_file(f).read_all().to_pylist()
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable {ext[1:]} file ({e})") from None
