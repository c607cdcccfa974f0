"""Where this process stands in a training job: its tf.distribute strategy and worker index, read from
TF_CONFIG as TensorFlow defines it, and the check that every worker trains the same thing."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from common.errors import InputError, RunError

STRATEGIES = ("default", "mirrored", "multiworker")
WORKER_TIMEOUT = 600  # seconds a step waits for the other workers before the run fails
LOST_WORKER = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError)  # what a collective operation raises when a peer is gone


@dataclass
class Workers:
    """This process's place in the training job: its tf.distribute strategy and worker index (0: the chief,
    which alone writes the run folder)."""

    strategy: tf.distribute.Strategy
    index: int = 0
    count: int = 1

    @property
    def chief(self) -> bool:
        return self.index == 0

    @property
    def name(self) -> str:
        return f"worker {self.index} of {self.count}"


def tf_config_task() -> tuple[int, int]:
    """(this worker's index, number of workers) from TF_CONFIG, counted as tf.distribute does (the chief
    task, if any, first); InputError when TF_CONFIG is missing or does not place this process."""
    usage = ('expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": I}} '
             "(docs/scaling.md)")
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise InputError("TF_CONFIG", f"--strategy multiworker needs this environment variable: {usage}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError("TF_CONFIG", f"not valid JSON ({err.msg})") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise InputError("TF_CONFIG", usage)
    tasks = [(kind, i) for kind in ("chief", "worker") for i in range(len(cluster.get(kind) or ()))]
    me = (task.get("type"), task.get("index"))
    if me not in tasks:
        raise InputError("TF_CONFIG", f"task {me[0]} {me[1]} is not in the cluster; {usage}")
    return tasks.index(me), len(tasks)


def make_workers(strategy: str) -> Workers:
    """The tf.distribute strategy `strategy` ("default", "mirrored" or "multiworker") for this process."""
    if strategy == "default":
        return Workers(tf.distribute.get_strategy())
    if strategy == "mirrored":
        return Workers(tf.distribute.MirroredStrategy())
    index, count = tf_config_task()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=WORKER_TIMEOUT)
    return Workers(tf.distribute.MultiWorkerMirroredStrategy(communication_options=options), index, count)


def agree(workers: Workers, out: Path, digest: str, start: int) -> None:
    """Refuse to train unless every worker has the same configuration and inputs (`digest`) and starts at
    the same epoch (`start`): one collective operation, so every worker must call it."""
    if workers.count == 1:
        return
    strategy = workers.strategy
    mine = tf.constant([[int(digest[:15], 16), start]], tf.int64)
    every = tf.function(lambda: strategy.gather(strategy.run(lambda: tf.identity(mine)), axis=0))().numpy()
    if (every[:, 0] != every[0, 0]).any():
        raise RunError(f"{out}: the workers were given different configurations or stores: run the same "
                       "command, on the same stores, on every worker")
    if (every[:, 1] != every[0, 1]).any():
        raise RunError(f"{out}: the workers found different checkpoints (or outputs) in this run folder: it "
                       "must be on a disk that every worker reads, like the stores")
