"""Tiny readers of the logs a run writes, for tests: TensorBoard event files (TFRecord framing of
`tensorboardX.proto` events, TensorBoard's purge rule), W&B offline `.wandb` files (a LevelDB-log
framing of `wandb_internal_pb2.Record`s), and `jax.profiler`'s Chrome trace."""

import gzip
import json
import pathlib
import struct
import time


def _tf_records(path: pathlib.Path):
    raw = path.read_bytes()
    pos = 0
    while pos < len(raw):
        (length,) = struct.unpack("<Q", raw[pos : pos + 8])
        pos += 12  # length and its masked CRC
        yield raw[pos : pos + length]
        pos += length + 4  # data and its masked CRC


def tensorboard_events(logdir: pathlib.Path) -> list[tuple[str, list]]:
    """`[(file name, [Event, ...]), ...]` of every event file in `logdir`, oldest first."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):  # names start with the time
        events = []
        for data in _tf_records(path):
            event = event_pb2.Event()
            event.ParseFromString(data)
            events.append(event)
        out.append((path.name, events))
    return out


def tensorboard_scalars(logdir: pathlib.Path) -> dict[str, dict[int, list[float]]]:
    """`{tag: {step: [values]}}` as TensorBoard shows them: a `SessionLog.START` event at step
    `s` (a writer's `purge_step`) drops the values of steps >= `s` read before it."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, list[float]]] = {}
    for _, events in tensorboard_events(logdir):
        for event in events:
            if event.HasField("session_log"):
                if event.session_log.status == event_pb2.SessionLog.START:
                    for steps in scalars.values():
                        for step in [s for s in steps if s >= event.step]:
                            del steps[step]
                continue
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, {}).setdefault(event.step, [])
                    scalars[value.tag][event.step].append(value.simple_value)
    return scalars


def tensorboard_texts(logdir: pathlib.Path) -> dict[str, list[str]]:
    """`{tag: [text, ...]}` of the text summaries (tensorboardX writes them as string tensors)."""
    out: dict[str, list[str]] = {}
    for _, events in tensorboard_events(logdir):
        for event in events:
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.string_val:
                    text = value.tensor.string_val[0].decode()
                    out.setdefault(value.tag.split("/")[0], []).append(text)
    return out


def _wandb_records(run_file: pathlib.Path) -> list:
    from wandb.proto import wandb_internal_pb2

    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B", f"{run_file} is not a W&B transaction log"
    block, pos, parts, records = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        pos += 7
        if pos + length > len(raw):  # still being written
            break
        parts += raw[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL or LAST: one whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def wandb_history(run_file: pathlib.Path, *, timeout_s: float = 30.0) -> list[dict]:
    """The `history` rows (`{key: value}`, with `_step`) of a W&B offline `run-*.wandb` file.

    wandb's service process writes the file: `run.finish()` can return before it has, so this
    waits (up to `timeout_s`) for the run's `exit` record, the last one.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        records = _wandb_records(run_file)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "exit" in kinds, f"{run_file} has no exit record after {timeout_s} s"
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r, kind in zip(records, kinds)
        if kind == "history"
    ]


def profiled_steps(profile_dir: pathlib.Path) -> list[list[int]]:
    """The annotated `train` step numbers of each `*.trace.json.gz` under `profile_dir`, one list
    per trace, oldest first."""
    out = []
    for path in sorted(profile_dir.rglob("*.trace.json.gz")):
        events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
        out.append(sorted(int(e["args"]["step_num"]) for e in events if e.get("name") == "train"))
    return out
