"""The benchmarks' RESULTS.md sections: a run without the real shards keeps the real-shard tables it cannot
re-measure, marked with the date they were measured."""

from benchmarks.bench_models import kept_real_tables
from benchmarks.results import read_section, write_section

TABLES = ("Fold A: train `validate00[0-8][0-9].tfrecord`\n\n| model | validation GAP |\n|---|---|\n"
          "| qrnn-video | 0.7123 |\n| moe | 0.7093 |")


def test_write_then_read_a_section_leaves_the_others(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("One", "python -m one", "first", path)
    write_section("Two", "python -m two", "second", path)
    write_section("One", "python -m one", "first again", path)
    assert read_section("One", path).endswith("first again")
    assert read_section("Two", path).endswith("second")
    assert read_section("Three", path) == ""


def test_a_run_without_shards_keeps_the_last_measured_tables(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("Models", "python -m benchmarks.bench_models",
                  f"### Real 2018 video-level shards\n\n{TABLES}\n\nWhole benchmark: 900 s.", path)
    kept = kept_real_tables(read_section("Models", path))
    assert kept.startswith("Not re-run") and TABLES in kept
    stamp = read_section("Models", path).splitlines()[2]
    assert stamp.split("(")[1].split(";")[0] in kept  # the date of the run that measured them

    write_section("Models", "python -m benchmarks.bench_models",
                  f"### Real 2018 video-level shards\n\n{kept}\n\nWhole benchmark: 200 s.", path)
    assert kept_real_tables(read_section("Models", path)) == kept  # a second run without shards: unchanged


def test_without_earlier_tables_the_shards_are_reported_missing():
    assert kept_real_tables("") == "Real 2018 shards not found: skipped.\n"
