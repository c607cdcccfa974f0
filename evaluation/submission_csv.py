"""Read Kaggle submission CSVs and ground truth (a feature store or a `VideoId,Labels` CSV), strictly.

Submission: header `VideoId,LabelConfidencePairs`, then `<id>,<label> <score> ...` with at most k pairs.
Reading is vectorized (NumPy finds the line structure, pandas' C parser reads the numbers; speed:
benchmarks/RESULTS.md, Evaluation). When anything looks wrong, the file is re-read line by line with the
plain parser below, which names the first bad line and what is wrong with it.
"""

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import InputError
from evaluation.metrics import K, LabelSets, rank_pairs

HEADER = "VideoId,LabelConfidencePairs"
TRUTH_HEADER = "VideoId,Labels"
# Longer lines are refused before any parsing: a submission line of 20 pairs takes under 500 bytes and a
# ground-truth line listing every class of the vocabulary under 20 KB.
MAX_LINE_BYTES = 1 << 16
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
NOT_FINITE = re.compile(r"[+-]?(nan|inf|infinity)", re.IGNORECASE)
FIRST_DATA_LINE = 2  # line 1 is the header


@dataclass
class Submission:
    """A submission's rows: labels (N, k) int64 padded with -1, scores (N, k) float64 padded with -inf.

    Each row is ordered by score descending, then label id ascending (the metrics' tie rule).
    """

    path: str
    ids: list[str]
    labels: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Truth:
    """Ground truth: video ids and their label sets; num_classes is known when it came from a store."""

    path: str
    ids: list[str]
    labels: LabelSets
    num_classes: int | None = None

    def __len__(self) -> int:
        return len(self.ids)


def read_submission(path, num_classes: int, k: int = K) -> Submission:
    """Read and validate a submission CSV; InputError (with the line number) on the first problem."""
    path = Path(path)
    body = _body(path, HEADER)
    try:
        ids, labels, scores = _read_fast(path, body, num_classes, k)
    except _Irregular:
        ids, labels, scores = _read_slow(path, body, num_classes, k)
    labels, scores = rank_pairs(labels, scores)
    return Submission(str(path), ids, labels, scores)


def read_truth(source, num_classes: int | None = None) -> Truth:
    """Ground truth from a feature store folder or a `VideoId,Labels` CSV (labels space-separated).

    With `num_classes`, a CSV label outside 0..num_classes-1 is an error.
    """
    source = Path(source)
    if source.is_dir():
        return _truth_from_store(source)
    body = _body(source, TRUTH_HEADER)
    try:
        ids, labels = _read_truth_fast(source, body, num_classes)
    except _Irregular:
        ids, labels = _read_truth_slow(source, body, num_classes)
    return Truth(str(source), ids, labels, num_classes)


def _truth_from_store(folder: Path) -> Truth:
    from features.store import Store  # imported here: scoring a CSV against a CSV needs no store

    store = Store(folder)
    if not store.has_labels:
        raise InputError(folder, "this feature store has no labels (a test split?): nothing to score against")
    labels = LabelSets(np.asarray(store.labels_indptr, dtype=np.int64), np.asarray(store.labels_indices))
    return Truth(str(folder), store.id_strings(), labels, store.num_classes)


def _body(path: Path, header: str) -> bytes:
    """The file's bytes after its header line (which must be `header`), trailing blank lines removed."""
    try:
        data = path.read_bytes()
    except (IsADirectoryError, PermissionError) as err:
        raise InputError(path, f"cannot read it as a CSV file ({err.strerror})") from None
    end = data.find(b"\n")
    first = data if end < 0 else data[:end]
    if first.decode("utf-8", errors="replace").strip().lstrip("\ufeff") != header:
        raise InputError(path, f"the first line must be the header {header!r}", line=1)
    stop = len(data)
    while stop > end + 1 and data[stop - 1] in b" \t\r\n":  # trailing blank lines (without copying data)
        stop -= 1
    body = data[end + 1 : stop] if end >= 0 else b""
    ends = np.append(np.flatnonzero(np.frombuffer(body, np.uint8) == ord("\n")), len(body))
    lengths = np.diff(ends, prepend=-1) - 1
    if len(body) and lengths.max() > MAX_LINE_BYTES:
        row = int(np.argmax(lengths > MAX_LINE_BYTES))
        raise InputError(path, f"{lengths[row]:,} bytes on one line, far more than any valid line "
                               f"({MAX_LINE_BYTES:,} at most)", line=row + FIRST_DATA_LINE)
    return body


class _Irregular(Exception):
    """The fast reader met something it does not handle; the line-by-line reader takes over."""


@dataclass
class _Layout:
    """Byte offsets of each data line's start, end (its newline) and comma, for a file with one comma a line."""

    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    commas: np.ndarray

    def text(self, body: bytes, row: int) -> str:
        return body[int(self.starts[row]) : int(self.ends[row])].decode("utf-8", errors="replace")


def _layout(body: bytes) -> _Layout:
    """Find the lines; _Irregular unless every line has exactly one comma and something before it."""
    buf = np.frombuffer(body, dtype=np.uint8)
    ends = np.append(np.flatnonzero(buf == ord("\n")), len(buf))
    starts = np.concatenate([[0], ends[:-1] + 1])
    commas = np.flatnonzero(buf == ord(","))
    if len(commas) != len(ends) or not np.array_equal(np.searchsorted(ends, commas), np.arange(len(ends))):
        raise _Irregular
    if np.any(commas == starts):
        raise _Irregular
    return _Layout(buf, starts, ends, commas)


def _read_fast(path: Path, body: bytes, num_classes: int, k: int):
    """Vectorized reading of a well-formed file; raises _Irregular (or InputError) otherwise."""
    if not body:
        return [], np.zeros((0, k), np.int64), np.zeros((0, k))
    layout = _layout(body)
    columns = 1 + 2 * k + 2  # two spare columns catch a row with k + 1 pairs without a parser error
    try:
        table = pd.read_csv(
            io.BytesIO(body.replace(b",", b" ")), sep=" ", header=None, names=range(columns),
            dtype={0: str, **{c: np.float64 for c in range(1, columns)}}, keep_default_na=False,
            na_values=[""], quoting=csv.QUOTE_NONE, engine="c", skip_blank_lines=False,
        )
    except (ValueError, pd.errors.ParserError) as err:  # a token that is not a number, or far too many
        raise _Irregular from err
    ids = table[0].astype(str)
    if len(table) != len(layout.ends) or not np.array_equal(ids.str.len().to_numpy(),
                                                             layout.commas - layout.starts):
        raise _Irregular  # an id with spaces in it, or lines the parser merged or skipped

    values = table.iloc[:, 1:].to_numpy(dtype=np.float64)
    present = ~np.isnan(values)
    count = present.sum(axis=1)
    bad = (count % 2 == 1) | (count > 2 * k) | np.any(present != (np.arange(columns - 1) < count[:, None]), 1)
    labels, scores, paired = values[:, 0 : 2 * k : 2], values[:, 1 : 2 * k : 2], present[:, 0 : 2 * k : 2]
    label_ok = (labels == np.floor(labels)) & (labels >= 0) & (labels < num_classes)
    bad |= np.any(paired & ~(label_ok & np.isfinite(scores)), axis=1) | ~_labels_in_digits(layout)
    sorted_labels = np.sort(np.where(paired, labels, -1.0 - np.arange(k)), axis=1)
    bad |= np.any(sorted_labels[:, 1:] == sorted_labels[:, :-1], axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        _parse_line(path, layout.text(body, row), row + FIRST_DATA_LINE, num_classes, k)
        raise _Irregular  # the line parser accepts what pandas did not: let it read the whole file
    _check_unique(path, ids)
    return ids.tolist(), np.where(paired, labels, -1).astype(np.int64), np.where(paired, scores, -np.inf)


def _check_unique(path: Path, ids: pd.Series) -> None:
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        first = int(np.argmax((ids == ids.iloc[row]).to_numpy()))
        raise InputError(path, f"video id {ids.iloc[row]!r} already on line {first + FIRST_DATA_LINE}",
                         line=row + FIRST_DATA_LINE)


def _lines(body: bytes) -> list[str]:
    return body.decode("utf-8", errors="replace").split("\n") if body else []


def _read_slow(path: Path, body: bytes, num_classes: int, k: int):
    """Line-by-line reading: the reference for what a valid file is, and the source of error messages."""
    lines = _lines(body)
    ids, seen = [], {}
    labels = np.full((len(lines), k), -1, dtype=np.int64)
    scores = np.full(labels.shape, -np.inf)
    for row, text in enumerate(lines):
        number = row + FIRST_DATA_LINE
        vid, row_labels, row_scores = _parse_line(path, text, number, num_classes, k)
        if vid in seen:
            raise InputError(path, f"video id {vid!r} already on line {seen[vid]}", line=number)
        seen[vid] = number
        ids.append(vid)
        labels[row, : len(row_labels)] = row_labels
        scores[row, : len(row_scores)] = row_scores
    return ids, labels, scores


def _labels_in_digits(layout: _Layout) -> np.ndarray:
    """Per line: whether every label (the 2nd, 4th, ... token, counting the id) is written in digits alone.

    Token parity comes from running XORs over chunks of whole lines (bounded memory); it is exact for lines
    of whole pairs, and a line that is not is refused anyway."""
    buf, ends = layout.buf, layout.ends
    good = np.ones(len(ends), dtype=bool)
    start = 0
    while start < len(buf):
        stop = int(ends[min(np.searchsorted(ends, start + (1 << 24)), len(ends) - 1)]) + 1
        chunk = buf[start:stop]
        blank = np.isin(chunk, np.frombuffer(b" \t\r,\n", np.uint8))
        token_start = ~blank
        token_start[1:] &= blank[:-1]
        odd = np.bitwise_xor.accumulate(token_start.view(np.uint8)) ^ np.bitwise_xor.accumulate(
            (chunk == ord("\n")).view(np.uint8))  # 1 inside the id, the scores; 0 inside labels
        wrong = ~blank & (odd == 0) & ((chunk < ord("0")) | (chunk > ord("9")))
        good[np.searchsorted(ends, np.flatnonzero(wrong) + start)] = False
        start = stop
    return good


def _parse_line(path: Path, text: str, number: int, num_classes: int, k: int):
    """One data line -> (id, labels, scores); InputError naming the line and the problem otherwise."""

    def fail(problem: str):
        raise InputError(path, problem, line=number)

    if not text.strip():
        fail("empty line")
    vid, comma, rest = text.partition(",")
    if not comma:
        fail("expected '<VideoId>,<label> <score> ...' but there is no comma")
    if "," in rest:
        fail("more than one comma")
    if not vid or vid != vid.strip() or len(vid.split()) != 1:
        fail(f"bad video id {vid!r}")
    tokens = rest.split()
    if len(tokens) % 2:
        fail(f"{len(tokens)} values: a label without its score")
    if len(tokens) > 2 * k:
        fail(f"{len(tokens) // 2} label/score pairs, more than {k}")
    labels, scores = [], []
    for label_text, score_text in zip(tokens[0::2], tokens[1::2], strict=True):
        if not (label_text.isascii() and label_text.isdigit()):
            fail(f"label {label_text!r} is not a class id written in digits (such as 405)")
        label = int(label_text)
        if not 0 <= label < num_classes:
            fail(f"label {label} is outside the {num_classes}-class vocabulary (0..{num_classes - 1})")
        if label in labels:
            fail(f"label {label} appears twice")
        if NOT_FINITE.fullmatch(score_text):
            fail(f"score {score_text!r} of label {label} is not a finite number")
        if not NUMBER.fullmatch(score_text):
            fail(f"score {score_text!r} of label {label} is not a number")
        if not math.isfinite(float(score_text)):
            fail(f"score {score_text!r} of label {label} is not a finite number")
        labels.append(label)
        scores.append(float(score_text))
    return vid, labels, scores


def _read_truth_fast(path: Path, body: bytes, num_classes: int | None):
    """Vectorized reading of `<id>,<label> <label> ...` lines (labels: plain digits); _Irregular otherwise."""
    if not body:
        return [], LabelSets(np.zeros(1, np.int64), np.zeros(0, np.int64))
    layout = _layout(body)
    buf, n = layout.buf, len(layout.ends)
    # +1 just after each comma, -1 at each line's end: a running sum marks the labels part of every line
    marks = np.zeros(len(buf) + 1, dtype=np.int8)
    marks[layout.commas + 1] += 1
    marks[layout.ends] -= 1
    in_labels = np.cumsum(marks[:-1], dtype=np.int8).astype(bool)
    digit = (buf >= ord("0")) & (buf <= ord("9"))
    space = (buf == ord(" ")) | (buf == ord("\t")) | (buf == ord("\r"))
    if np.any(in_labels & ~digit & ~space) or np.any(~in_labels & space):
        raise _Irregular  # something other than digits among the labels, or a space in an id
    # +1 where a run of label digits starts, -1 just after it ends: one token per run
    change = np.diff(np.concatenate([[False], digit & in_labels, [False]]).view(np.int8))
    first, stop = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    length = stop - first
    if length.size and length.max() > 15:
        raise _Irregular  # a label too long to be a class id
    labels = np.zeros(len(first), dtype=np.int64)
    for j in range(int(length.max()) if length.size else 0):  # add one digit place at a time
        more = length > j
        labels[more] = labels[more] * 10 + (buf[first[more] + j] - ord("0"))
    line_of_token = np.searchsorted(layout.ends, first)
    if num_classes is not None and np.any(labels >= num_classes):
        raise _Irregular
    ids = pd.Series(_ids(body, layout))
    _check_unique(path, ids)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(line_of_token, minlength=n))]).astype(np.int64)
    return ids.tolist(), LabelSets(indptr, labels)


def _ids(body: bytes, layout: _Layout) -> list[str]:
    """The text before each line's comma: gathered as one fixed-width byte array when the ids are ASCII."""
    lengths = layout.commas - layout.starts
    width = int(lengths.max())
    if width <= 64:  # YouTube-8M ids have 4 (2018) or 11 (2017) characters
        spots = np.minimum(layout.starts[:, None] + np.arange(width), len(layout.buf) - 1)
        chars = np.where(np.arange(width) < lengths[:, None], layout.buf[spots], 0).astype(np.uint8)
        if np.all(chars < 128):
            return chars.view(f"S{width}").ravel().astype(str).tolist()
    return [body[s:c].decode("utf-8", errors="replace") for s, c in
            zip(layout.starts.tolist(), layout.commas.tolist(), strict=True)]


def _read_truth_slow(path: Path, body: bytes, num_classes: int | None):
    """Line-by-line reading of a ground-truth CSV, naming the first bad line."""
    ids, lists, seen = [], [], {}
    for number, text in enumerate(_lines(body), start=FIRST_DATA_LINE):
        vid, comma, rest = text.partition(",")
        if not comma or "," in rest or not vid or len(vid.split()) != 1 or vid != vid.strip():
            raise InputError(path, "expected '<VideoId>,<label> <label> ...'", line=number)
        if vid in seen:
            raise InputError(path, f"video id {vid!r} already on line {seen[vid]}", line=number)
        seen[vid] = number
        tokens = rest.split()
        if not all(t.isascii() and t.isdigit() for t in tokens):
            raise InputError(path, f"labels must be whole numbers, got {rest.strip()!r}", line=number)
        labels = np.array([int(t) for t in tokens], dtype=np.int64)
        if num_classes is not None and labels.size and labels.max() >= num_classes:
            raise InputError(path, f"label {labels.max()} is outside the {num_classes}-class vocabulary",
                             line=number)
        ids.append(vid)
        lists.append(labels)
    return ids, LabelSets.from_lists(lists)
