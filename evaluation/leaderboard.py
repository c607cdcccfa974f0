"""The leaderboard: every model card and score under a workspace, single models and ensembles apart, sorted by GAP.

Reads workspace/models/*/card.json, workspace/evaluation/scores/*.json and, when present, the Kaggle
listings workspace/submissions/kaggle/*.json; writes workspace/evaluation/leaderboard.{md,csv,png}.
Metrics are shown in percent; the published reference rows are listed below, never mixed with ours.
"""

import csv
import io
import json
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from common.card import Card
from common.errors import InputError
from common.files import atomic_path, write_text_atomic
from evaluation.score import run_and_split

COLUMNS = ["run", "model", "split", "GAP", "Hit@1", "PERR", "parameters", "size MB", "train s",
           "train videos/s", "inference videos/s", "Kaggle public", "Kaggle private", "note"]
PUBLISHED_NOTE = "published, not run here"


@dataclass
class Row:
    """One leaderboard line; metrics are fractions (0..1), None where unknown."""

    run: str
    model: str
    split: str
    gap: float | None = None
    hit_at_one: float | None = None
    perr: float | None = None
    parameters: int | None = None
    size_mb: float | None = None
    train_seconds: float | None = None
    train_videos_per_second: float | None = None
    inference_videos_per_second: float | None = None
    kaggle_public: float | None = None
    kaggle_private: float | None = None
    note: str = ""


# The seed paper's table (percent; its logistic, MoE and LSTM rows give Hit@1 and PERR only) and the
# 2017 challenge's final top three (Kaggle private leaderboard GAP).
PUBLISHED = [
    Row("seed paper: QRNN", "qrnn", "", 0.808, 0.854, 0.756, note=PUBLISHED_NOTE),
    Row("seed paper: logistic regression", "logistic", "", None, 0.605, 0.530, note=PUBLISHED_NOTE),
    Row("seed paper: mixture of experts", "moe", "", None, 0.633, 0.558, note=PUBLISHED_NOTE),
    Row("seed paper: LSTM", "lstm", "", None, 0.645, 0.573, note=PUBLISHED_NOTE),
    Row("2017 challenge: 1st place", "", "test", 0.84966, note=PUBLISHED_NOTE),
    Row("2017 challenge: 2nd place", "", "test", 0.84589, note=PUBLISHED_NOTE),
    Row("2017 challenge: 3rd place", "", "test", 0.84541, note=PUBLISHED_NOTE),
]


def gather(workdir) -> list[Row]:
    """One row per (run, split) with a score or a Kaggle result; a run with neither shows its card's
    validation metrics (note "from training"). Sorted by GAP, best first."""
    workdir = Path(workdir)
    cards = {card.run: card for card in map(Card.load, sorted(workdir.glob("models/*/card.json")))}
    rows: dict[tuple[str, str], Row] = {}
    for path in sorted(workdir.glob("evaluation/scores/*.json")):
        score = _read_json(path, dict)
        run, split = run_and_split(path.with_suffix(".csv").name)
        try:
            row = Row(score.get("run", run), "", score.get("split", split), float(score["gap"]),
                      float(score["hit_at_one"]), float(score["perr"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(path, "a score file needs numbers 'gap', 'hit_at_one' and 'perr'") from None
        rows[(row.run, row.split)] = row
    for (run, split), (public, private) in kaggle_scores(workdir).items():
        if run in cards or any(key[0] == run for key in rows):
            row = rows.setdefault((run, split), Row(run, "", split))
            row.kaggle_public, row.kaggle_private = public, private
    for run, card in cards.items():
        if not any(key[0] == run for key in rows):
            v = card.validation or {}
            rows[(run, "validate")] = Row(run, "", "validate", v.get("gap"), v.get("hit_at_one"), v.get("perr"),
                                          note="from training")
    for row in rows.values():
        if row.run in cards:
            _fill_from_card(row, cards[row.run])
    return sorted(rows.values(), key=lambda r: (r.gap is None, -(r.gap or 0.0), r.run, r.split))


def _fill_from_card(row: Row, card: Card) -> None:
    row.model = card.model
    row.parameters = card.parameters
    row.size_mb = card.file_bytes / 1e6
    row.train_seconds = card.train_seconds
    row.train_videos_per_second = card.train_videos_per_second
    row.inference_videos_per_second = card.inference_videos_per_second


def kaggle_scores(workdir) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(run, split) -> (public, private) score of the latest scored Kaggle submission of `<run>_<split>.csv`."""
    found: dict[tuple[str, str], tuple[str, float | None, float | None]] = {}
    for path in sorted(Path(workdir).glob("submissions/kaggle/*.json")):
        for entry in _read_json(path, list):
            if not isinstance(entry, dict) or not str(entry.get("fileName", "")).endswith(".csv"):
                continue
            public, private = _number(entry.get("publicScore")), _number(entry.get("privateScore"))
            if public is None and private is None:
                continue  # pending or failed: nothing to show
            key = run_and_split(entry["fileName"])
            date = str(entry.get("date", ""))
            if key not in found or date >= found[key][0]:
                found[key] = (date, public, private)
    return {key: (public, private) for key, (_, public, private) in found.items()}


def _number(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _read_json(path: Path, kind: type):
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg})", line=err.lineno) from None
    if not isinstance(value, kind):
        raise InputError(path, f"expected a JSON {'object' if kind is dict else 'list'}")
    return value


def cells(row: Row) -> list[str]:
    """A row as display strings: metrics in percent, sizes and rates rounded."""

    def pct(x, digits=3):
        return "" if x is None else f"{100 * x:.{digits}f}"

    def num(x, fmt):
        return "" if x is None else format(x, fmt)

    return [row.run, row.model, row.split, pct(row.gap), pct(row.hit_at_one), pct(row.perr),
            num(row.parameters, ",d"), num(row.size_mb, ".2f"), num(row.train_seconds, ".1f"),
            num(row.train_videos_per_second, ",.0f"), num(row.inference_videos_per_second, ",.0f"),
            pct(row.kaggle_public), pct(row.kaggle_private), row.note]


def markdown(rows: list[Row]) -> str:
    """The leaderboard as markdown: our single models, then our ensembles, then the published rows.

    Ensembles get their own table: their member weights were fitted on their validation store, so their
    score there flatters them and would not rank fairly against single models."""

    def table(rows, columns):
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        escaped = ([cell.replace("|", "\\|") for cell in cells(r)[: len(columns)]] for r in rows)  # a | in a name
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in escaped])

    singles = [r for r in rows if r.model != "ensemble"]
    ensembles = [r for r in rows if r.model == "ensemble"]
    ours = table(singles, COLUMNS[:-1]) if singles else "(no model cards or scores found)"
    if ensembles:
        ours += ("\n\n## Ensembles\n\nEach ensemble's member weights were fitted on its validation store, so its "
                 "score on that split flatters it; compare ensembles with single models on another split.\n\n"
                 + table(ensembles, COLUMNS[:-1]))
    published = table(PUBLISHED, ["reference", "model", "split", "GAP", "Hit@1", "PERR"])
    return (f"# Leaderboard\n\nGAP@20, Hit@1 and PERR in percent, sorted by GAP; size MB = 10^6 bytes of "
            f"model.keras.\n\n{ours}\n\n## Published, not run here\n\n{published}\n")


def to_csv(rows: list[Row]) -> str:
    """Our rows then the published ones, metrics as fractions, numbers unrounded."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in fields(Row)])
    for row in rows + PUBLISHED:
        writer.writerow(["" if v is None else v for v in astuple(row)])
    return out.getvalue()


def plot(rows: list[Row], path: Path) -> Path | None:
    """Bar chart of GAP by run and split beside the published GAPs (PNG); None when nothing has a GAP."""
    ours = [r for r in rows if r.gap is not None]
    if not ours:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    published = [r for r in PUBLISHED if r.gap is not None]
    shown = ours + published
    names = [f"{r.run} ({r.split})" for r in ours] + [r.run for r in published]
    colors = ["tab:blue"] * len(ours) + ["tab:gray"] * len(published)
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(shown) + 1.2))
    ax.barh(names[::-1], [100 * r.gap for r in shown][::-1], color=colors[::-1])
    ax.set_title("GAP@20 by model")
    ax.set_xlabel("GAP@20 (%)  -  gray: published, not run here")
    ax.set_xlim(0, 100)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_leaderboard(workdir) -> tuple[list[Row], dict[str, Path]]:
    """Gather the rows and write leaderboard.md, .csv and .png under workdir/evaluation (atomically)."""
    rows = gather(workdir)
    folder = Path(workdir) / "evaluation"
    written = {"md": folder / "leaderboard.md", "csv": folder / "leaderboard.csv"}
    write_text_atomic(written["md"], markdown(rows))
    write_text_atomic(written["csv"], to_csv(rows))
    png = plot(rows, folder / "leaderboard.png")
    if png:
        written["png"] = png
    return rows, written
