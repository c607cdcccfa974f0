"""`python -m evaluation score|leaderboard`: parse arguments and call evaluation's plain functions."""

import argparse
import json
import os

from common.cli import quiet_tensorflow, run
from common.workspace import workdir
from evaluation.metrics import K


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m evaluation",
        description="Score Kaggle submission CSVs (GAP@20, Hit@1, PERR) and build the leaderboard.")
    commands = parser.add_subparsers(dest="command", required=True)

    score = commands.add_parser("score", help="score a submission CSV against ground truth",
                                description="GAP@20, Hit@1 and PERR of a Kaggle submission CSV.")
    score.add_argument("--submission", required=True, help="submission CSV (VideoId,LabelConfidencePairs)")
    score.add_argument("--truth", required=True, help="feature store folder with labels, or a VideoId,Labels CSV")
    score.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    score.add_argument("--ignore-extra", action="store_true",
                       help="skip submission videos that are not in the truth (an error otherwise)")
    score.add_argument("--classes", type=int, default=None,
                       help="vocabulary size when the truth is a CSV (default 3862; a store knows its own)")
    score.add_argument("--workdir", default=None,
                       help="also save the scores as WORKDIR/evaluation/scores/<csv name>.json "
                            "(also when $YT8M_WORKDIR is set)")

    board = commands.add_parser("leaderboard", help="gather cards and scores into the leaderboard",
                                description="Write evaluation/leaderboard.{md,csv,png} and print the table.")
    board.add_argument("--workdir", default=None, help="workspace folder (default $YT8M_WORKDIR or ./workspace)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.command == "score":
        from evaluation.score import report_path, save_report, saved_report, score_files, score_inputs

        options = dict(ignore_extra=args.ignore_extra, num_classes=args.classes, k=K)
        folder = workdir(args.workdir) if args.workdir or os.environ.get("YT8M_WORKDIR") else None
        inputs = score_inputs(args.submission, args.truth, **options) if folder else None
        report = saved_report(folder, inputs) if inputs else None
        if report is not None:
            note = f"{report_path(folder, args.submission)}: up to date"
        else:
            report = score_files(args.submission, args.truth, **options)
            note = f"saved       {save_report(report, folder, inputs)}" if folder else None
        if args.json:
            print(json.dumps(report.to_dict()))
        else:
            print(report.text())
            if note:
                print(note)
    else:
        from evaluation.leaderboard import markdown, write_leaderboard

        folder = workdir(args.workdir)
        rows, written = write_leaderboard(folder)
        print(markdown(rows))
        if not rows:
            print(f"(no model cards under {folder / 'models'} and no scores under {folder / 'evaluation/scores'})")
        print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    quiet_tensorflow()
    raise SystemExit(run(main))
