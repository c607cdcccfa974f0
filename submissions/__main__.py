"""`python -m submissions predict|submit|status`: parse the arguments and call the functions that do the work."""

import argparse
import sys

from common.cli import quiet_tensorflow, run
from common.workspace import workdir


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m submissions",
                                  description="Kaggle submission CSVs: predict, validate and upload, list.")
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser(
        "predict", help="write a model's top-k labels per video of a store as a submission CSV",
        description="Stream a feature store through a trained model and write the top-k (label, score) pairs "
                    "of every video as a Kaggle CSV (atomically), and the inference rate into card.json. "
                    "Skipped when the CSV is already this model's top k of this store (recorded beside it).")
    p.add_argument("--model", required=True, metavar="DIR", help="run folder with model.keras and card.json")
    p.add_argument("--features", required=True, metavar="STORE", help="feature store folder to predict")
    p.add_argument("--out", required=True, metavar="CSV", help="submission file, e.g. workspace/submissions/"
                                                              "<run>_<split>.csv")
    p.add_argument("--top-k", type=int, default=20, help="pairs per video, 1..20 (default 20, Kaggle's maximum)")
    p.add_argument("--batch-size", type=int, default=256, help="videos per model call (default 256)")

    s = commands.add_parser(
        "submit", help="validate a submission CSV, then upload it to a Kaggle competition",
        description="Validate the CSV (header, unique ids, at most 20 pairs, labels in the vocabulary, finite "
                    "scores; with --truth every video exactly once), then upload it with the kaggle client. "
                    "Credentials: ~/.kaggle/kaggle.json, KAGGLE_USERNAME + KAGGLE_KEY, or KAGGLE_API_TOKEN.")
    s.add_argument("--competition", required=True, metavar="SLUG", help="youtube8m-2018 (3,862 classes) or "
                                                                        "youtube8m (2017, 4,716 classes)")
    s.add_argument("--file", required=True, metavar="CSV", help="the submission CSV")
    s.add_argument("--message", required=True, metavar="TEXT", help="the submission's description on Kaggle")
    s.add_argument("--truth", metavar="STORE_OR_CSV",
                   help="feature store (or VideoId,Labels CSV) whose videos must each appear exactly once")
    s.add_argument("--dry-run", action="store_true", help="validate and show what would be sent; upload nothing")

    st = commands.add_parser(
        "status", help="list your past submissions to a competition with their scores",
        description="List the competition's past submissions of your account (newest first, the client's "
                    "first page) and save them to <workdir>/submissions/kaggle/<slug>.json for the leaderboard.")
    st.add_argument("--competition", required=True, metavar="SLUG", help="e.g. youtube8m-2018")
    st.add_argument("--workdir", metavar="DIR", help="workspace folder (default $YT8M_WORKDIR or ./workspace)")
    return top


def do_predict(args) -> int:
    from submissions.predict import predict

    predict(args.model, args.features, args.out, k=args.top_k, batch_size=args.batch_size)
    return 0


def do_submit(args) -> int:
    from submissions.kaggle_client import connect, upload
    from submissions.validate import check_submission

    checked = check_submission(args.file, args.competition, args.truth)
    print(f"{checked.path}: valid: {checked.rows:,} videos, {checked.pairs:,} label/score pairs, "
          f"{checked.num_classes:,}-class vocabulary"
          + (f", every video of {checked.truth} exactly once" if checked.truth else ""))
    if args.dry_run:
        print(f"dry run: would upload {checked.path} ({checked.size_bytes / 1e6:,.1f} MB, {checked.rows:,} rows) "
              f"to competition {args.competition} with message {args.message!r}; nothing sent")
        return 0
    api = connect()
    ref, text = upload(api, checked.path, args.message, args.competition)
    print(f"submitted {checked.path.name} to {args.competition}: {text} (submission ref {ref}); "
          f"check its score with: python -m submissions status --competition {args.competition}")
    return 0


def do_status(args) -> int:
    from submissions.kaggle_client import connect, format_listing, list_submissions, save_listing

    found = list_submissions(connect(), args.competition)
    print(format_listing(found) if found else f"no submissions to {args.competition} yet")
    print(f"saved to {save_listing(found, workdir(args.workdir), args.competition)}")
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from submissions.kaggle_client import KaggleError

    try:
        return {"predict": do_predict, "submit": do_submit, "status": do_status}[args.command](args)
    except KaggleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    quiet_tensorflow()
    raise SystemExit(run(main))
