"""`python -m models train|ensemble|export|list ...`: parse the arguments and call models.train.train,
models.ensemble.make_ensemble or models.export.export, or list the zoo."""

import argparse

from common.cli import quiet_tensorflow, run
from common.errors import InputError


def parse_config(pairs: list[str]) -> dict:
    """`key=value` overrides of the model config, values as text (models.zoo.make_config converts them)."""
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError("--config", f"expected key=value, got {pair!r}")
        config[key] = value
    return config


def parser() -> argparse.ArgumentParser:
    from models import zoo
    from models.distill import TEACHER_WEIGHT
    from models.export import WEIGHTS
    from models.train import DEFAULT_FRAMES, PRECISIONS, TrainOptions
    from models.workers import STRATEGIES

    defaults = TrainOptions()
    top = argparse.ArgumentParser(prog="python -m models",
                                  description="Train YouTube-8M models from feature stores, combine them "
                                              "into ensembles, export them with smaller weights.")
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "train", help="train one model; writes model.keras, card.json, history.csv, training.png",
        description="Train a model of the zoo. Re-running the same command resumes from the last checkpoint, "
                    "or says 'up to date' when the run folder already holds this training.")
    p.add_argument("--model", required=True, help=f"one of {', '.join(zoo.MODELS)} (see: python -m models list)")
    p.add_argument("--train", required=True, metavar="STORE", help="training feature store folder")
    p.add_argument("--validate", required=True, metavar="STORE", help="validation feature store folder")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder, e.g. workspace/models/<run>")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help=f"(default {defaults.epochs})")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help=f"videos per batch (default {defaults.batch_size})")
    rates = ", ".join(f"{name} {spec.learning_rate}" for name, spec in zoo.MODELS.items())
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"Adam's rate in epoch 1, then x{defaults.lr_decay} per epoch (default: the model's "
                        f"own: {rates})")
    p.add_argument("--frames", type=int, default=None, metavar="T",
                   help=f"frame-level models: frames sampled per video (default {DEFAULT_FRAMES})")
    p.add_argument("--seed", type=int, default=defaults.seed, help=f"(default {defaults.seed})")
    p.add_argument("--patience", type=int, default=defaults.patience,
                   help="early stopping: epochs without a better validation GAP "
                        f"(default {defaults.patience})")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model configuration overrides, e.g. hidden=512 layers=2")
    p.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy,
                   help="tf.distribute: one device (default), the local GPUs or CPU (mirrored), or the "
                        "machines in TF_CONFIG, each running this same command (multiworker); --batch-size "
                        "stays the global batch (docs/scaling.md)")
    p.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                   help="Keras mixed precision: mixed_bfloat16 on CPUs with BF16, mixed_float16 on GPUs; "
                        "the recurrence, loss and output stay float32 (default float32)")
    p.add_argument("--teacher", metavar="MODEL_DIR", default=None,
                   help="distillation: train on a mix of the labels and this model folder's scores (any model "
                        "folder, an ensemble included; it must predict the same classes and read the store)")
    p.add_argument("--teacher-weight", type=float, default=TEACHER_WEIGHT, metavar="W",
                   help="the teacher's share of the training videos' targets: (1 - W) labels + W teacher "
                        f"(default {TEACHER_WEIGHT}; 0 with --transfer: the teacher teaches on transfer videos only)")
    p.add_argument("--transfer", metavar="STORE", default=None,
                   help="with --teacher: a store (e.g. unlabelled test videos) whose videos join the training, "
                        "the teacher's scores as their targets")

    e = commands.add_parser(
        "ensemble", help="combine trained model folders into one; writes model.keras and card.json",
        description="Fit the members' weights by GAP@20 on a validation store and write one model folder "
                    "that predicts like any other (the members are sub-models of its model.keras).")
    e.add_argument("--members", required=True, nargs="+", metavar="DIR", help="two or more model folders")
    e.add_argument("--validate", required=True, metavar="STORE", help="labelled store to fit the weights on")
    e.add_argument("--out", required=True, metavar="DIR", help="the ensemble's folder, e.g. workspace/models/<run>")

    x = commands.add_parser(
        "export", help="write a smaller copy of a model folder (float16 or int8 weights)",
        description="Rewrite a model folder with float16 or int8 weights; its card gives the size and the "
                    "change in validation GAP, measured on the store named in the source card.")
    x.add_argument("--model", required=True, metavar="DIR", help="a model folder (trained, ensemble, ...)")
    x.add_argument("--out", required=True, metavar="DIR", help="the export's folder")
    x.add_argument("--weights", required=True, choices=WEIGHTS, help="the weight type")

    commands.add_parser("list", help="list the registered models", description="The models --model accepts: "
                        "name, level of the features it reads, default learning rate, what it is.")
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command == "list":
        from models import zoo

        for name, spec in zoo.MODELS.items():
            print(f"{name:<12} {spec.level:<6} lr {spec.learning_rate:<7g} {spec.summary}")
    elif args.command == "ensemble":
        from models.ensemble import make_ensemble

        make_ensemble(args.members, args.validate, args.out)
    elif args.command == "export":
        from models.export import export

        export(args.model, args.out, args.weights)
    else:
        from models.train import TrainOptions, train

        options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                               frames=args.frames, seed=args.seed, patience=args.patience, teacher=args.teacher,
                               teacher_weight=args.teacher_weight, transfer=args.transfer,
                               strategy=args.strategy, precision=args.precision)
        train(args.model, args.train, args.validate, args.out, options, parse_config(args.config))
    return 0


if __name__ == "__main__":
    quiet_tensorflow()
    raise SystemExit(run(main))
