"""Progress of a run for the people watching it, one stage at a time.

On a terminal Ray Data draws its own bars (`ray_adapter` turns them on); in a CI log or a redirected file bars
are noise, so each stage prints plain lines instead: a heartbeat every `interval_s` while it runs (rows so far,
rows/s) when the caller can count rows, and one closing line. Every mode but `off` prints the closing line,
since bars vanish when their stage ends. The run's closing summary is `manifests.inspect.format_summary`.
"""

from __future__ import annotations

import contextlib
import posixpath
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, TextIO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

Mode = Literal["bars", "lines", "off"]
HEARTBEAT_S = 30.0


def resolve_mode(setting: str, stream: TextIO = sys.stderr) -> Mode:
    """`auto` becomes bars on a terminal and lines anywhere else; other settings stay as they are."""
    if setting == "auto":
        return "bars" if stream.isatty() else "lines"
    if setting not in ("bars", "lines", "off"):
        raise ValueError(f"progress must be auto, bars, lines or off, got {setting!r}")
    return setting  # type: ignore[return-value]


def parquet_rows(folder: str) -> int:
    """Rows in the Parquet files under `folder`, from their footers alone; a file still being written is skipped."""
    fs, _ = fsspec.core.url_to_fs(folder)
    total = 0
    for path in fs.glob(posixpath.join(folder, "*.parquet")):
        try:
            with fs.open(path, "rb") as f:
                total += pq.ParquetFile(f).metadata.num_rows
        except (OSError, pa.ArrowException):
            continue
    return total


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:.1f} rows/s" if seconds > 0 else "- rows/s"


def stage_line(label: str, rows: int | None, seconds: float) -> str:
    if rows is None:
        return f"{label}: done in {seconds:.1f} s"
    return f"{label}: {rows} rows in {seconds:.1f} s ({rate(rows, seconds)})"


@dataclass
class StageHandle:
    """What the body of a stage can tell the reporter: set `rows` when it knows how many it handled."""

    label: str
    rows: int | None = None


class Progress:
    """Reports stages as they run; `stage_seconds` collects their durations for run.json."""

    def __init__(
        self,
        mode: Mode,
        log: Callable[[str], None] = print,
        total_stages: int | None = None,
        interval_s: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.mode = mode
        self.log = log
        self.total_stages = total_stages
        self.interval_s = interval_s
        self.clock = clock
        self.stage_seconds: dict[str, float] = {}

    def _label(self, name: str) -> str:
        if self.total_stages is None:
            return name
        return f"[{len(self.stage_seconds) + 1}/{self.total_stages}] {name}"

    @contextlib.contextmanager
    def stage(self, name: str, count_rows: Callable[[], int] | None = None) -> Iterator[StageHandle]:
        """Time the body; `count_rows` (rows done so far) feeds the heartbeats and, unless the body sets
        `handle.rows`, the closing line."""
        handle = StageHandle(self._label(name))
        start = self.clock()
        stop = threading.Event()
        beat = None
        if self.mode == "lines" and count_rows is not None and self.interval_s > 0:
            beat = threading.Thread(target=self._heartbeat, args=(handle.label, count_rows, start, stop), daemon=True)
            beat.start()
        try:
            yield handle
        except BaseException:
            if self.mode != "off":
                self.log(f"{handle.label}: failed after {self.clock() - start:.1f} s")
            raise
        finally:
            stop.set()
            if beat is not None:
                beat.join()
        seconds = self.clock() - start
        self.stage_seconds[name] = seconds
        if handle.rows is None and count_rows is not None:
            handle.rows = count_rows()
        if self.mode != "off":
            self.log(stage_line(handle.label, handle.rows, seconds))

    def _heartbeat(self, label: str, count_rows: Callable[[], int], start: float, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                rows = count_rows()
            except Exception:  # noqa: BLE001 - a count that fails mid-write only costs one heartbeat
                continue
            seconds = self.clock() - start
            self.log(f"{label}: {rows} rows so far, {seconds:.0f} s ({rate(rows, seconds)})")
