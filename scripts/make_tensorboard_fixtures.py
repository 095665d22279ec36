"""Golden TensorBoard event file for dtrain's writer (Tests/DTCommandsTests/TensorBoardTests.swift).

Builds the events with TensorBoard's own protobuf classes and record writer (length, masked CRC-32C of the
length, payload, masked CRC-32C of the payload), with fixed wall times so the bytes are reproducible, and
checks that TensorBoard's loader reads the scalars back. dtrain must write the same bytes.
    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    /tmp/tb/bin/python scripts/make_tensorboard_fixtures.py
"""
import io
import json
import pathlib

from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = pathlib.Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "tensorboard"
OUT.mkdir(parents=True, exist_ok=True)

# (wall_time, step, tag, value); step 0 and a value of 0 exercise proto3's default-omission rules.
SCALARS = [
    (1700000001.25, 0, "valid/loss", 2.609),
    (1700000002.5, 1, "train/loss", 2.5),
    (1700000002.5, 1, "train/learning_rate", 1e-3),
    (1700000002.5, 1, "train/grad_norm", 0.0),
    (1700000130.75, 300, "train/tokens_per_second", 1234.5),
    (1700000131.0, 300, "valid/loss", 0.4129),
]

buffer = io.BytesIO()
writer = RecordWriter(buffer)
first = event_pb2.Event(wall_time=1700000000.5, file_version="brain.Event:2",
                        source_metadata=event_pb2.SourceMetadata(writer="dtrain"))
writer.write(first.SerializeToString())
for wall, step, tag, value in SCALARS:
    event = event_pb2.Event(wall_time=wall, step=step,
                            summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]))
    writer.write(event.SerializeToString())
path = OUT / "golden.tfevents"
path.write_bytes(buffer.getvalue())

# TensorBoard reads it back: the scalars, in order.
read = []
for event in event_file_loader.EventFileLoader(str(path)).Load():
    for v in event.summary.value:
        read.append([event.wall_time, event.step, v.tag, v.simple_value])
assert [(r[1], r[2]) for r in read] == [(s[1], s[2]) for s in SCALARS], read
(OUT / "golden.json").write_text(json.dumps({"version_wall_time": 1700000000.5, "writer": "dtrain",
                                             "scalars": [list(s) for s in SCALARS]}, indent=1) + "\n")
print(f"wrote {path} ({path.stat().st_size} bytes)")
