"""`curation inspect` on finished, running, killed and failed runs, and the progress reporter."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curation import schema as rec
from manifests.inspect import duplicate_clusters, format_summary, inspect_command, inspect_run, summarize
from manifests.progress import Progress, parquet_rows, resolve_mode, stage_line
from manifests.writer import ManifestWriter

SCHEMA = rec.manifest_schema(rec.record_schema({"dup_cluster": pa.string()}))


def _rows(n: int, dropped: int) -> list[dict]:
    rows = [rec.new_record("web" if i % 2 else "laion", f"k{i}", 1) for i in range(n)]
    for r in rows[:dropped]:
        rec.drop(r, "decode", "truncated")
    return sorted(rows, key=lambda r: r["sample_id"])


def _write_parts(out: Path, rows: list[dict], rows_per_part: int) -> None:
    writer = ManifestWriter(str(out), SCHEMA, rows_per_part=rows_per_part)
    writer.add(rec.to_table(rows, SCHEMA))
    writer.close()


def _run_json(out: Path, **info) -> None:
    (out / "run.json").write_text(json.dumps({"version": "0.1.0", **info}))


def test_a_killed_run_with_only_intermediate_records_prints_what_it_has(tmp_path: Path):
    records = tmp_path / "_work" / "records"
    records.mkdir(parents=True)
    pq.write_table(rec.to_table(_rows(5, 2), SCHEMA), records / "a.parquet")
    pq.write_table(rec.to_table(_rows(3, 0)[:1], SCHEMA), records / "b.parquet")
    (records / "c.parquet").write_bytes(b"PAR1 cut short by the kill")
    _run_json(tmp_path, status="running", started=time.time() - 600)

    code, text = inspect_command(str(tmp_path))

    assert code == 0
    assert "run status 'running', started 10 min ago" in text
    assert "no manifest yet: rows come from 2 intermediate record file(s)" in text
    assert "skipped unreadable c.parquet" in text
    assert "inputs 6  kept 4  dropped 2" in text
    assert "decode  truncated      2" in text
    as_json = json.loads(inspect_command(str(tmp_path), as_json=True)[1])
    assert as_json["origin"] == "records" and as_json["inputs"] == 6 and as_json["kept_by_bucket"] == []


def test_a_truncated_manifest_part_is_skipped_and_named(tmp_path: Path):
    _write_parts(tmp_path, _rows(25, 7), rows_per_part=10)
    part = tmp_path / "manifest" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:200])
    _run_json(tmp_path, status="running")

    summary = inspect_run(str(tmp_path))

    assert summary["origin"] == "manifest"
    assert summary["inputs"] == 15  # parts 0 and 2
    assert any(n.startswith("skipped unreadable part-00001.parquet") for n in summary["notes"])


def test_a_failed_run_without_manifest_or_records_reports_its_error(tmp_path: Path):
    _run_json(tmp_path, status="failed", error="RayOutOfMemoryError in analyze")

    code, text = inspect_command(str(tmp_path))

    assert code == 0
    assert "run status 'failed': RayOutOfMemoryError in analyze" in text
    assert "no manifest and no intermediate records" in text
    assert "inputs 0  kept 0  dropped 0" in text


def test_a_half_written_run_json_is_a_note_and_a_missing_run_an_error(tmp_path: Path):
    _write_parts(tmp_path, _rows(4, 1), rows_per_part=10)
    (tmp_path / "run.json").write_text('{"status": "runn')
    assert "run.json is unreadable (JSONDecodeError" in inspect_command(str(tmp_path))[1]
    code, text = inspect_command(str(tmp_path / "nothing"))
    assert code == 1 and "holds no run" in text


def test_clusters_group_copies_under_their_survivor_largest_first():
    rows = _rows(8, 0)
    a, b = rows[0]["sample_id"], rows[1]["sample_id"]
    rows[0]["dup_cluster"] = a  # survivor of a 3-member cluster
    for r in rows[2:4]:
        rec.drop(r, "dedup", "dup_phash")
        r.update(dup_cluster=a, duplicate_of=a)
    rec.drop(rows[4], "dedup", "dup_exact")
    rows[4]["duplicate_of"] = b  # a copy that only names its survivor
    clusters = duplicate_clusters(rec.to_table(rows, SCHEMA))
    assert [(c["cluster"], c["size"], c["dropped"]) for c in clusters] == [(a, 3, 2), (b, 1, 1)]
    assert clusters[0]["survivor"] == {
        "source": rows[0]["source"],
        "source_key": rows[0]["source_key"],
        "status": "kept",
    }
    assert clusters[0]["dropped_by_reason"] == {"dup_phash": 2}
    assert clusters[1]["survivor"] is None


def test_the_demo_like_run_summary_matches_pandas(demo_like_run: Path):
    df = pd.read_parquet(demo_like_run / "manifest")
    s = inspect_run(str(demo_like_run))
    assert (s["inputs"], s["kept"], s["dropped"]) == (
        len(df),
        (df.status == "kept").sum(),
        (df.status == "dropped").sum(),
    )
    assert {k: v["in"] for k, v in s["per_source"].items()} == df.groupby("source").size().to_dict()
    assert s["notes"] == [] and s["duplicate_clusters"]
    text = format_summary(s)
    assert f"elapsed 12.5 s  ({len(df) / 12.5:.1f} images/s)" in text
    for title in (
        "per source:",
        "dropped by stage and reason:",
        "kept by bucket:",
        "largest duplicate clusters:",
        "time per stage:",
    ):
        assert title in text
    assert "analyze       8.0    64%" in text


def test_the_pipeline_summary_shape_still_formats():
    """The pipeline calls summarize-like output then format_summary with its own run info."""
    summary = summarize(rec.to_table(_rows(4, 1), SCHEMA))
    summary["run"] = {"elapsed_s": 2.0, "stage_seconds": {"analyze": 2.0}}
    assert format_summary(summary).startswith("inputs 4  kept 3  dropped 1  elapsed 2.0 s  (2.0 images/s)")


# ---- progress ---------------------------------------------------------------------------------------------


def test_progress_prints_one_closing_line_per_stage_with_its_rate():
    lines: list[str] = []
    progress = Progress("lines", lines.append, total_stages=3, clock=iter([0.0, 4.0, 4.0, 5.0]).__next__)
    with progress.stage("analyze") as st:
        st.rows = 10
    with progress.stage("identify"):
        pass
    assert lines == ["[1/3] analyze: 10 rows in 4.0 s (2.5 rows/s)", "[2/3] identify: done in 1.0 s"]
    assert progress.stage_seconds == {"analyze": 4.0, "identify": 1.0}


def test_progress_heartbeats_in_line_mode_and_reports_a_failed_stage():
    lines: list[str] = []
    progress = Progress("lines", lines.append, interval_s=0.01)
    try:
        with progress.stage("publish", count_rows=lambda: 7):
            time.sleep(0.1)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert any(line.startswith("publish: 7 rows so far") for line in lines)
    assert lines[-1].startswith("publish: failed after")


def test_progress_off_and_bars_modes():
    quiet: list[str] = []
    with Progress("off", quiet.append).stage("analyze", count_rows=lambda: 3):
        pass
    assert quiet == []
    bars: list[str] = []
    with Progress("bars", bars.append, interval_s=0.01).stage("analyze", count_rows=lambda: 3):
        time.sleep(0.05)  # no heartbeats: Ray's bars show progress on a terminal
    assert len(bars) == 1 and bars[0].startswith("analyze: 3 rows in")


def test_resolve_mode_and_row_counting(tmp_path: Path):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_mode("auto", Tty()) == "bars" and resolve_mode("auto", io.StringIO()) == "lines"
    assert resolve_mode("off") == "off"
    pq.write_table(pa.table({"a": list(range(5))}), tmp_path / "0.parquet")
    pq.write_table(pa.table({"a": list(range(3))}), tmp_path / "1.parquet")
    (tmp_path / "2.parquet").write_bytes(b"still being written")
    assert parquet_rows(str(tmp_path)) == 8
    assert stage_line("x", 0, 0.0) == "x: 0 rows in 0.0 s (- rows/s)"
