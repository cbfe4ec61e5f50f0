"""Reading a data set's rows, as plain dicts, from wherever `data.source` points.

- a file: .jsonl / .json (JSON lines, or one JSON list of objects), .parquet, .arrow (the Arrow
  stream files `datasets` writes, or Arrow IPC files);
- a folder: one written by `datasets`' `save_to_disk` (a Dataset, or a DatasetDict: `split`
  picks one), or a folder of data files the way the hub lays them out;
- anything else: a hub dataset id, where a hub is reachable.

Files are read directly (no `datasets` cache copy of a large parquet file); a JSON syntax error
names its line.
"""

from __future__ import annotations

import json
import os

from system.data.rows import DataError

FILE_TYPES = (".jsonl", ".json", ".parquet", ".arrow")


def read_rows(source: str, split: str = "train") -> list[dict]:
    """Every row of the data set at `source` (a file, a folder or a hub id)."""
    ext = os.path.splitext(source)[1]
    if ext in FILE_TYPES or os.path.isfile(source):
        if not os.path.isfile(source):
            raise DataError(f"data file not found: {source}")
        if split != "train":
            raise DataError(f"{source}: a file has no splits (data.split={split!r} is for hub datasets and "
                            "saved DatasetDict folders)")
        if ext in (".jsonl", ".json"):
            return _read_json(source)
        if ext in (".parquet", ".arrow"):
            return _read_arrow_table(source, ext)
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
    return data.to_list()


def _read_json(path: str) -> list[dict]:
    with open(path) as f:
        text = f.read()
    if path.endswith(".json") and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
        return [_object(row, f"{path}, row {number}") for number, row in enumerate(rows, 1)]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {number}: not valid JSON ({e.msg})") from None
        rows.append(_object(row, f"{path}, line {number}"))
    return rows


def _object(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
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
