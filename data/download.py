"""Download official YouTube-8M shards the way the dataset's own `download.py` does, made safe to resume.

What the official script (served at http://data.yt8m.org/download.py) does, and this module keeps:
- partition `VERSION/LEVEL/SPLIT` (e.g. `2/video/train`; LEVEL video, frame, video_level or frame_level;
  SPLIT train, validate or test);
- the download plan `http://data.yt8m.org/<VERSION>/download_plans/<LEVEL>_<SPLIT>.json`, a JSON object
  `{"files": {"trainAb.tfrecord": "<md5 hex>", ...}}`, saved beside the shards as
  `<VERSION>_<LEVEL>_<SPLIT>_download_plan.json` and reused on the next run;
- shard selection `X,Y` (1 <= X <= Y): a file is taken when int(md5(file name), 16) % Y == X - 1;
- each file from `http://<mirror>.data.yt8m.org/<partition>/<file name>`, mirror `us`, `eu` or `asia`;
- local names with the plan's two-character suffix turned into a 4-digit index over
  itertools.product(a-z A-Z 0-9, repeat=2): `trainAb.tfrecord` -> `train0053.tfrecord`;
- an md5 check of every file; files already present with the right md5 are skipped.
What it adds: a partial download goes to a hidden temporary name and is renamed only once its md5 matches
(a mismatch is an error and the file is not kept); plan names that would land outside the output
folder are refused; tqdm progress with bytes and rate.

For tests and private mirrors, `YT8M_DOWNLOAD_URL=http://host:port` replaces both hosts: the plan is then
fetched from `$YT8M_DOWNLOAD_URL/<VERSION>/download_plans/<LEVEL>_<SPLIT>.json` and files from
`$YT8M_DOWNLOAD_URL/<partition>/<file name>` (the mirror is ignored).
"""

import hashlib
import itertools
import json
import os
import string
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common.errors import InputError
from common.files import atomic_path

MIRRORS = ("us", "eu", "asia")
LEVELS = ("video", "frame", "video_level", "frame_level")
SPLITS = ("train", "validate", "test")
URL_VARIABLE = "YT8M_DOWNLOAD_URL"
SUFFIXES = ["".join(p) for p in itertools.product(string.ascii_lowercase + string.ascii_uppercase + string.digits,
                                                  repeat=2)]
SUFFIX_INDEX = {s: i for i, s in enumerate(SUFFIXES)}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Partition:
    """A parsed `VERSION/LEVEL/SPLIT`."""

    version: str
    level: str
    split: str

    @classmethod
    def parse(cls, text: str) -> "Partition":
        parts = text.strip("/").split("/")
        if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in LEVELS or parts[2] not in SPLITS:
            raise InputError(text, f"partition must be VERSION/LEVEL/SPLIT with LEVEL in {', '.join(LEVELS)} "
                                   f"and SPLIT in {', '.join(SPLITS)}, e.g. 2/video/train")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.version}/{self.level}/{self.split}"


def plan_url(partition: Partition) -> str:
    base = os.environ.get(URL_VARIABLE, "http://data.yt8m.org").rstrip("/")
    return f"{base}/{partition.version}/download_plans/{partition.level}_{partition.split}.json"


def file_url(partition: Partition, name: str, mirror: str) -> str:
    base = os.environ.get(URL_VARIABLE, f"http://{mirror}.data.yt8m.org").rstrip("/")
    return f"{base}/{partition}/{urllib.request.quote(name)}"


def parse_shards(text: str) -> tuple[int, int]:
    """`X,Y` -> (X, Y) with 1 <= X <= Y."""
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        x = y = 0
    if not 1 <= x <= y:
        raise InputError(text, "--shards must be X,Y with integers 1 <= X <= Y (take the X-th of Y parts)")
    return x, y


def selected(name: str, x: int, y: int) -> bool:
    """The official rule: the file belongs to part X of Y when int(md5(name), 16) % Y == X - 1."""
    return int(hashlib.md5(name.encode("utf-8")).hexdigest(), 16) % y == x - 1


def local_name(name: str, plan_path: Path) -> str:
    """`trainAb.tfrecord` -> `train0053.tfrecord`; refuses names that are not plain file names."""
    stem, dot, ext = name.rpartition(".")
    if (not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith(".")
            or Path(name).is_absolute() or not dot or stem[-2:] not in SUFFIX_INDEX):
        raise InputError(plan_path, f"refusing file name {name!r}: not a plain <prefix><2 letters>.<ext> "
                                    "name inside the output folder")
    return f"{stem[:-2]}{SUFFIX_INDEX[stem[-2:]]:04d}.{ext}"


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, label: str) -> str:
    """Stream `url` into `target` with a tqdm bar (bytes, rate); return the md5 of what arrived."""
    from tqdm import tqdm

    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise InputError(url, f"download failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise InputError(url, f"download failed: {getattr(err, 'reason', err)}") from None
    return digest.hexdigest()


def load_plan(partition: Partition, out: Path) -> tuple[Path, dict[str, str]]:
    """The plan {file name: md5}: the saved copy in `out` if there is one, else fetched and saved."""
    path = out / f"{str(partition).replace('/', '_')}_download_plan.json"
    if not path.exists():
        print(f"fetching the download plan {plan_url(partition)}")
        with atomic_path(path) as tmp:
            _fetch(plan_url(partition), tmp, path.name)
    else:
        print(f"using the saved download plan {path}")
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InputError(path, 'not a download plan (expected {"files": {"name": "md5", ...}}); '
                               "delete it to fetch it again") from None
    return path, files


def download(partition: str, out, shards: str = "1,1", mirror: str = "us") -> list[Path]:
    """Download part `shards` of `partition` into `out`; return the local paths of all its files.

    Verified files are skipped; every other file is fetched to a temporary name, md5-checked and renamed.
    A file whose md5 does not match is deleted; the others are still fetched, then an InputError is raised.
    """
    if mirror not in MIRRORS:
        raise InputError(mirror, f"mirror must be one of {', '.join(MIRRORS)}")
    part = Partition.parse(partition)
    x, y = parse_shards(shards)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan_path, plan = load_plan(part, out)
    names = {name: local_name(name, plan_path) for name in sorted(plan) if selected(name, x, y)}
    if len(set(names.values())) != len(names):
        raise InputError(plan_path, "two plan entries map to the same local file name")
    print(f"{len(names)} of {len(plan)} files in part {x} of {y} of {part}")

    failures, paths, fetched = [], [], 0
    for number, (name, local) in enumerate(names.items(), 1):
        target, label = out / local, f"[{number}/{len(names)}] {local}"
        if target.resolve().parent != out.resolve():
            raise InputError(plan_path, f"refusing file name {name!r}: it is outside {out}")
        paths.append(target)
        if target.exists() and md5_of(target) == plan[name].lower():
            print(f"{label}: already downloaded and verified; skipped")
            continue
        started = time.perf_counter()
        try:
            size = fetch_verified(file_url(part, name, mirror), target, plan[name].lower(), label)
        except InputError as err:
            failures.append(err)
            print(f"{label}: FAILED: {err.problem}")
            continue
        fetched += 1
        seconds = time.perf_counter() - started
        print(f"{label}: {size:,} bytes in {seconds:.1f} s ({size / 1e6 / max(seconds, 1e-6):.1f} MB/s), md5 verified")
    if failures:
        more = f" ({len(failures)} files failed; run again to retry)" if len(failures) > 1 else ""
        raise InputError(failures[0].path, failures[0].problem + more)
    print(f"done: {fetched} downloaded, {len(names) - fetched} already there, in {out}")
    return paths


def fetch_verified(url: str, target: Path, md5: str, label: str) -> int:
    """Fetch `url` to a temporary name and rename it onto `target` only if its md5 is `md5`; return its size."""
    with atomic_path(target) as tmp:
        got = _fetch(url, tmp, label)
        if got != md5:
            raise InputError(target, f"md5 mismatch (expected {md5}, got {got}); the file was not kept")
        return tmp.stat().st_size
