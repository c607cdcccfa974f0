"""python -m features convert|info: turn shards into a feature store, or describe a store."""

import argparse

from common.cli import quiet_tensorflow, run


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m features", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert", help="convert TFRecord shards (either level, detected) into a memmap feature store",
        description="Convert shards into a feature store. A store made from exactly these shards is left as it "
                    "is ('up to date'); a run that was interrupted goes on from its last finished shard.")
    convert.add_argument("--shards", required=True, help="folder of .tfrecord shards, or a glob (quoted)")
    convert.add_argument("--out", required=True, help="store folder to write (replaced only when complete)")
    convert.add_argument("--workers", type=_positive, default=None,
                         help="threads parsing records in parallel (default: number of cores)")
    convert.add_argument("--skip-corrupt", action="store_true",
                         help="skip bad records and unreadable shards (each reported) instead of stopping at the first")

    info = commands.add_parser("info", help="print what a store holds: counts, bytes, labels, frames",
                               description="Describe a feature store.")
    info.add_argument("store", help="store folder")
    info.add_argument("--vocabulary", help="vocabulary.csv (Index,...,Name) to name the most frequent labels")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "convert":
        from features.convert import convert

        convert(args.shards, args.out, workers=args.workers, skip_corrupt=args.skip_corrupt)
    else:
        from features.info import describe_store

        print(describe_store(args.store, args.vocabulary))
    return 0


if __name__ == "__main__":
    quiet_tensorflow()
    raise SystemExit(run(main))
