"""A stand-in `kaggle` package for tests: same import path and method names as kaggle 2.x, no network.

`install(folder)` writes it under `folder` (put on sys.path or PYTHONPATH). Every call is appended to
$FAKE_KAGGLE_LOG as a JSON line; $FAKE_KAGGLE_MODE picks the behaviour: ok, rejected (upload failed),
forbidden (HTTP 403), offline (no network) or badauth (authenticate exits like the real client).
"""

from pathlib import Path

FAKE_API = '''
import datetime, enum, json, os, sys
import requests


class Status(enum.Enum):
    PENDING = 0
    COMPLETE = 1


class Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def log(**call):
    with open(os.environ["FAKE_KAGGLE_LOG"], "a") as f:
        f.write(json.dumps(call) + "\\n")


def fail_if_asked():
    mode = os.environ.get("FAKE_KAGGLE_MODE", "ok")
    if mode == "offline":
        raise requests.ConnectionError("HTTPSConnectionPool(host='www.kaggle.com'): Max retries exceeded")
    if mode == "forbidden":
        response = requests.Response()
        response.status_code = 403
        raise requests.HTTPError("403 Client Error: Forbidden", response=response)


class KaggleApi:
    COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE = "Could not submit to competition"

    def authenticate(self):
        log(call="authenticate", user=os.environ.get("KAGGLE_USERNAME"))
        if os.environ.get("FAKE_KAGGLE_MODE") == "badauth":
            print("Authentication required to call the Kaggle API.")
            sys.exit(1)

    def competition_submit(self, file_name, message, competition, quiet=False, sandbox=False):
        fail_if_asked()
        data = open(file_name).read()
        log(call="competition_submit", file_name=file_name, message=message, competition=competition,
            quiet=quiet, rows=data.count("\\n") - 1)
        if os.environ.get("FAKE_KAGGLE_MODE") == "rejected":
            return Obj(message=self.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE, ref=0)
        return Obj(message="Successfully submitted to YouTube-8M", ref=4242)

    def competition_submissions(self, competition, group=None, sort=None, page_number=-1, page_token="",
                                page_size=20):
        fail_if_asked()
        log(call="competition_submissions", competition=competition)
        day = datetime.datetime(2018, 8, 1, 12, 30, tzinfo=datetime.timezone.utc)
        return [
            Obj(ref=2, file_name="synthetic-qrnn_test.csv", date=day, description="qrnn", status=Status.COMPLETE,
                public_score="0.8123", private_score="0.8101", error_description=None),
            Obj(ref=1, file_name="synthetic-moe_test.csv", date=day, description="", status=Status.PENDING,
                public_score=None, private_score=None, error_description=None),
        ]
'''


def install(folder) -> Path:
    """Write the fake package into `folder`; returns `folder`."""
    folder = Path(folder)
    (folder / "kaggle" / "api").mkdir(parents=True, exist_ok=True)
    (folder / "kaggle" / "__init__.py").write_text('"""Fake kaggle package for tests."""\n')
    (folder / "kaggle" / "api" / "__init__.py").write_text("")
    (folder / "kaggle" / "api" / "kaggle_api_extended.py").write_text(FAKE_API)
    return folder
