"""`python -m data synth|download|check`: generate, download or validate YouTube-8M TFRecord shards."""

import argparse

from common.cli import quiet_tensorflow, run
from data.formats import NUM_CLASSES


def _videos(text: str) -> int:
    from data.synth import PER_SPLIT

    value = int(text)
    if not 1 <= value <= PER_SPLIT:
        raise argparse.ArgumentTypeError(f"must be in 1..{PER_SPLIT}, not {value}")
    return value


def _split(text: str) -> str:
    if not text.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"must be a plain name (letters, digits, _ or -), not {text!r}")
    return text


def _classes(text: str) -> int:
    value = int(text)
    if not 1 <= value <= NUM_CLASSES[2018]:
        raise argparse.ArgumentTypeError(f"must be in 1..{NUM_CLASSES[2018]} (the 2018 format), not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write synthetic shards in the official formats",
                                description="Write DIR/<split>0000.tfrecord... of synthetic videos (2018 format, "
                                            "at most 1000 videos per shard); deterministic for a seed.")
    synth.add_argument("--out", required=True, help="folder for the shards")
    synth.add_argument("--level", required=True, choices=["frame", "video"])
    synth.add_argument("--split", required=True, type=_split, help="split name, e.g. train, validate, test")
    synth.add_argument("--videos", required=True, type=_videos, help="number of videos")
    synth.add_argument("--seed", type=int, default=0,
                       help="the task (classes, prototypes) depends on it and --classes; videos also on --split")
    synth.add_argument("--classes", type=_classes, default=NUM_CLASSES[2018], help="number of classes")

    download = commands.add_parser("download", help="download official shards (md5-checked, resumable)",
                                   description="Fetch a partition's shards like the official download.py "
                                               "(base URL overridable with $YT8M_DOWNLOAD_URL).")
    download.add_argument("--partition", required=True, help="VERSION/LEVEL/SPLIT, e.g. 2/video/train")
    download.add_argument("--shards", required=True,
                          help="X,Y: the X-th of Y deterministic parts of the plan (1,1: every file)")
    download.add_argument("--mirror", choices=["us", "eu", "asia"], default="us")
    download.add_argument("--out", required=True, help="folder for the shards")

    check = commands.add_parser("check", help="read every record of some shards and summarize them",
                                description="Validate shards: read every record; a bad one is an error "
                                            "naming file and record, or skipped with --skip-corrupt.")
    check.add_argument("--shards", required=True, help="folder of .tfrecord files, or a glob")
    check.add_argument("--skip-corrupt", action="store_true",
                       help="skip bad records and unreadable shards, and report each")
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command == "synth":
        from data.synth import generate

        generate(args.out, args.level, args.split, args.videos, seed=args.seed, classes=args.classes)
    elif args.command == "download":
        from data.download import download

        download(args.partition, args.out, shards=args.shards, mirror=args.mirror)
    else:
        from data.check import check_shards

        print(check_shards(args.shards, skip_corrupt=args.skip_corrupt).text())
    return 0


if __name__ == "__main__":
    quiet_tensorflow()
    raise SystemExit(run(main))
