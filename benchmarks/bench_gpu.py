"""GPU benchmark: one QRNN layer against one cuDNN LSTM layer at the QRNN paper's settings.

    python -m benchmarks.bench_gpu [--hidden 320] [--quick]

For batch sizes 8..256 and sequence lengths 32..512 (Bradbury et al. 2016, Figure 4: a 320-unit layer),
the seconds of a forward pass (inference) and of a forward and backward pass (training) of each layer,
best of several runs, and their ratio LSTM / QRNN; and the share of the QRNN's time spent in its
recurrence (the scan) rather than in the gates' matrix product. Needs a GPU: without one it says so and
measures nothing (--quick runs two tiny sizes on any device, to check the script, and writes nothing).
"""

import argparse
import time

from common.cli import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.results import write_section  # noqa: E402
from models.qrnn import QRNN  # noqa: E402

BATCHES = (8, 16, 32, 64, 128, 256)
LENGTHS = (32, 64, 128, 256, 512)


def best_seconds(fn, runs: int) -> float:
    fn()  # trace and warm up
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def timings(layer, x, runs: int) -> tuple[float, float]:
    """(forward seconds, forward + backward seconds) of `layer` on `x`, synchronised by reading a value."""
    forward = tf.function(lambda: layer(x))

    @tf.function
    def train():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, layer.trainable_variables)

    return (best_seconds(lambda: float(tf.reduce_sum(forward())), runs),
            best_seconds(lambda: float(tf.reduce_sum(train()[0])), runs))


def measure(batch: int, length: int, hidden: int, runs: int) -> dict:
    x = tf.random.normal((batch, length, hidden))
    qrnn, lstm = QRNN(hidden, window=2, pooling="fo"), keras.layers.LSTM(hidden)
    q_fwd, q_train = timings(qrnn, x, runs)
    l_fwd, l_train = timings(lstm, x, runs)
    gates = tf.function(lambda: qrnn._gates(x)["z"])
    share = 1 - best_seconds(lambda: float(tf.reduce_sum(gates())), runs) / q_fwd
    return {"batch": batch, "length": length, "inference": l_fwd / q_fwd, "training": l_train / q_train,
            "recurrence": share}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=320, help="units of both layers (the paper's 320)")
    p.add_argument("--quick", action="store_true", help="two tiny sizes on any device; writes nothing")
    args = p.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.quick:
        print("no GPU on this machine: nothing measured (see docs/scaling.md)")
        return
    sizes = [(8, 32), (16, 64)] if args.quick else [(b, t) for b in BATCHES for t in LENGTHS]
    runs = 2 if args.quick else 10
    rows = [measure(b, t, args.hidden, runs) for b, t in sizes]
    lines = [f"{len(gpus)} GPU(s): {', '.join(g.name for g in gpus) or 'none (--quick on CPU)'}; one layer of "
             f"{args.hidden} units on {args.hidden}-d inputs; speed-up = LSTM seconds / QRNN seconds, best of "
             f"{runs}; recurrence = the QRNN forward pass's share outside the gates' matrix product.", "",
             "| batch | length | inference speed-up | training speed-up | QRNN recurrence share |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['length']} | {r['inference']:.1f}x | {r['training']:.1f}x | "
              f"{r['recurrence']:.0%} |" for r in rows]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("GPU: QRNN against cuDNN LSTM", f"python -m benchmarks.bench_gpu --hidden {args.hidden}", body)


if __name__ == "__main__":
    main()
