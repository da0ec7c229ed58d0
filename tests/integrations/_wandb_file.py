"""An independent reader of W&B's local transaction log (``run-<id>.wandb``).

The file is a ``:W&B`` header (7 bytes) and then LevelDB's log format: 32 KiB blocks of
records ``crc32 (4) | length (2, little endian) | type (1) | data``, type 1 full, 2 first,
3 middle, 4 last; each record's data is a serialised ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7


def chunks(path: Path) -> list[bytes]:
    raw = Path(path).read_bytes()
    assert raw[:4] == b":W&B", "not a W&B transaction log"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + HEADER])
        data = raw[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        if kind == 1:
            out.append(data)
        elif kind == 2:
            pending = data
        elif kind == 3:
            pending += data
        elif kind == 4:
            out.append(pending + data)
            pending = b""
    return out


def read(path: Path) -> tuple[list[dict], dict]:
    """``(history rows, summary)`` logged to the run, values decoded from JSON."""
    from wandb.proto import wandb_internal_pb2 as pb

    history, summary = [], {}
    for data in chunks(path):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                summary[key] = json.loads(item.value_json)
    return history, summary


def wait_closed(path: Path, timeout: float = 30.0) -> None:
    """W&B's writer process may still be flushing after ``finish()``: wait for the exit record."""
    import time

    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + timeout
    while True:
        for data in chunks(path):
            rec = pb.Record()
            rec.ParseFromString(data)
            if rec.WhichOneof("record_type") == "exit":
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.1)
