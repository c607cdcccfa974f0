"""Talk to Kaggle with the official `kaggle` client: sign in, upload a submission, list past submissions.

The client is imported only here, inside the functions, so that everything else (and `submit --dry-run`)
works without it. Credentials stay with the client: this module only says where they were found.
"""

import contextlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from common.files import write_json_atomic

HELP = ("no Kaggle credentials found: create an API token at https://www.kaggle.com/settings/api and save "
        "kaggle.json in ~/.kaggle/ (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN")


class KaggleError(Exception):
    """Signing in, the network or the server failed; `str()` is the one line shown to the user."""


@dataclass
class KaggleSubmission:
    """One past submission as Kaggle lists it; the leaderboard reads these from <slug>.json."""

    fileName: str  # camelCase: the names Kaggle and the leaderboard use
    date: str
    description: str
    status: str
    publicScore: str | None
    privateScore: str | None
    ref: int


def credential_source(env=None) -> str | None:
    """Where the kaggle client will find credentials (an environment variable's name or a file), or None.

    Mirrors kaggle 2.x: KAGGLE_API_TOKEN, ~/.kaggle/access_token, KAGGLE_USERNAME + KAGGLE_KEY,
    kaggle.json in $KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle, and `kaggle auth login`'s file.
    """
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    config_dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else [
        home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    files = [d / "kaggle.json" for d in config_dirs] + [
        home / ".kaggle" / name for name in ("access_token", "access_token.txt", "credentials.json")]
    return next((str(f) for f in files if f.is_file()), None)


def error_line(err: BaseException, competition: str) -> str:
    """One line for an exception from the client: network, refusal by the server, or anything else."""
    import requests

    if isinstance(err, requests.ConnectionError | requests.Timeout):
        return f"cannot reach Kaggle (no network?): {type(err).__name__}"
    response = getattr(err, "response", None)
    if response is not None and getattr(response, "status_code", None):
        code = response.status_code
        hint = {401: "the credentials were refused", 403: "not allowed (have you accepted the rules of "
                f"https://www.kaggle.com/c/{competition}?)", 404: f"no competition {competition!r} "
                "(or it no longer accepts submissions)"}.get(code, "the server refused the request")
        return f"Kaggle answered HTTP {code}: {hint}"
    first_line = (str(err).strip().splitlines() or [""])[0]
    return f"Kaggle client failed: {type(err).__name__}" + (f": {first_line}" if first_line else "")


def connect():
    """A signed-in KaggleApi; KaggleError when no credentials are found or they do not work."""
    source = credential_source()
    if source is None:
        raise KaggleError(HELP)
    # The package prints sign-in help on stdout when it fails; our one-line error replaces it.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError as err:
            raise KaggleError(f"the kaggle package is not installed ({err}); run ./setup.sh") from None
        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise KaggleError(f"Kaggle did not accept the credentials from {source}") from None
        except Exception as err:
            raise KaggleError(error_line(err, "")) from None
    return api


def upload(api, csv, message: str, competition: str) -> tuple[int | None, str]:
    """Upload `csv` to `competition`; returns (submission reference, Kaggle's message)."""
    try:
        response = api.competition_submit(str(csv), message, competition, quiet=True)
    except Exception as err:
        raise KaggleError(error_line(err, competition)) from None
    text = getattr(response, "message", "") or ""
    ref = getattr(response, "ref", None) or None
    failed = getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", "Could not submit to competition")
    if text == failed or ref is None:
        raise KaggleError(f"Kaggle did not accept the upload: {text or 'no submission reference returned'}")
    return ref, text


def list_submissions(api, competition: str) -> list[KaggleSubmission]:
    """The competition's past submissions of this account, newest first (the client's first page)."""
    try:
        found = api.competition_submissions(competition) or []
    except Exception as err:
        raise KaggleError(error_line(err, competition)) from None
    return [to_record(s) for s in found if s is not None]


def to_record(s) -> KaggleSubmission:
    """An ApiSubmission as plain values: status as a lower-case word, date as ISO 8601 text."""
    status = getattr(s.status, "name", str(s.status)).lower()
    date = s.date.isoformat() if hasattr(s.date, "isoformat") else str(s.date or "")
    return KaggleSubmission(s.file_name or "", date, s.description or "", status,
                            s.public_score or None, s.private_score or None, int(s.ref or 0))


def save_listing(submissions: list[KaggleSubmission], workdir, competition: str) -> Path:
    """Write workdir/submissions/kaggle/<slug>.json (atomically), where the leaderboard looks."""
    path = Path(workdir) / "submissions" / "kaggle" / f"{competition}.json"
    write_json_atomic(path, [asdict(s) for s in submissions])
    return path


def format_listing(submissions: list[KaggleSubmission]) -> str:
    """A plain table: file, date, status, public and private score."""
    rows = [("file", "date", "status", "public", "private")]
    rows += [(s.fileName, s.date[:19], s.status, s.publicScore or "-", s.privateScore or "-") for s in submissions]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)
