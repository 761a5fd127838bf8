"""Training on several machines: the cluster spec, and joining it with TensorFlow's
MultiWorkerMirroredStrategy (CPU, ring all-reduce over the network).

The spec is TensorFlow's own TF_CONFIG, from a file, a string or the environment::

    {"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
     "task": {"type": "worker", "index": 0}}

Every worker runs the same `puf train RUN_DIR --cluster SPEC` with its own index; worker 0
is the chief. Joining waits at most `timeout` seconds for every worker: TensorFlow itself
would wait for a missing one forever, inside a call Python cannot interrupt, so a worker
that never comes ends this process with the message (killed by a watchdog), not a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edge_app.errors import PufError
from edge_app.json_files import parse_json

JOIN_TIMEOUT_S = 300.0
_WATCHDOG = """import os, signal, sys, time
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(timeout)
if os.getppid() == parent:
    sys.stderr.write(message)
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""


@dataclass(frozen=True)
class Cluster:
    workers: tuple[str, ...]  # host:port of every worker, the chief (index 0) first
    index: int  # this worker's place in `workers`

    @property
    def chief(self) -> bool:
        return self.index == 0

    def tf_config(self) -> dict:
        return {"cluster": {"worker": list(self.workers)}, "task": {"type": "worker", "index": self.index}}

    @classmethod
    def parse(cls, spec: str, origin: str = "--cluster") -> Cluster:
        """A TF_CONFIG-style spec: a JSON file's path or the JSON text itself."""
        text = spec
        if not spec.lstrip().startswith("{"):
            try:
                text = Path(spec).read_text()
            except OSError as error:
                raise PufError(f"{origin}: no cluster spec file {spec} ({error.strerror}); give a file "
                               'or the JSON itself: {"cluster": {"worker": [HOST:PORT, ...]}, '
                               '"task": {"type": "worker", "index": I}}') from None
        try:
            data = parse_json(text, "cluster spec")
        except PufError as error:
            raise PufError(f"{origin}: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict):
            raise PufError(f'{origin}: the cluster spec needs "cluster": {{"worker": [HOST:PORT, ...]}}')
        jobs = sorted(set(data["cluster"]) - {"worker"})
        if jobs:
            raise PufError(f"{origin}: only worker jobs are supported (worker 0 is the chief), not {jobs}")
        workers = data["cluster"].get("worker")
        if not isinstance(workers, list) or not workers:
            raise PufError(f'{origin}: "cluster": {{"worker": [...]}} must list at least one HOST:PORT')
        for address in workers:
            _check_address(address, origin)
        if len(set(workers)) != len(workers):
            raise PufError(f"{origin}: a worker address is listed twice: {workers}")
        task = data.get("task")
        if not isinstance(task, dict) or "index" not in task:
            raise PufError(f'{origin}: the cluster spec needs this worker\'s "task": '
                           '{"type": "worker", "index": I}')
        if task.get("type", "worker") != "worker":
            raise PufError(f'{origin}: task type must be "worker", got {task.get("type")!r}')
        index = task["index"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
            raise PufError(f"{origin}: task index must be an integer in 0..{len(workers) - 1}, got {index!r}")
        return cls(tuple(workers), index)


def _check_address(address: object, origin: str) -> None:
    host, _, port = str(address).rpartition(":")
    if not isinstance(address, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PufError(f"{origin}: bad worker address {address!r}: HOST:PORT with a port in 1..65535")


def cluster_from(spec: str | None) -> Cluster | None:
    """The --cluster spec, else $TF_CONFIG when it is set, else None (one machine)."""
    if spec is not None:
        return Cluster.parse(spec)
    if os.environ.get("TF_CONFIG"):
        return Cluster.parse(os.environ["TF_CONFIG"], "TF_CONFIG")
    return None


def join(cluster: Cluster, timeout: float = JOIN_TIMEOUT_S):
    """The strategy of this worker, once every worker has joined (see the module's note
    on the timeout). Call it before TensorFlow runs any op in this process."""
    import tensorflow as tf

    if timeout <= 0:
        raise PufError(f"the join timeout must be positive, got {timeout}")
    os.environ["TF_CONFIG"] = json.dumps(cluster.tf_config())
    others = ", ".join(a for i, a in enumerate(cluster.workers) if i != cluster.index)
    message = (f"puf train: error: not every worker joined within {timeout:g} s (this is worker "
               f"{cluster.index} of {', '.join(cluster.workers)}): start `puf train --cluster` on "
               f"{others} too, and check that those ports are reachable\n")
    # TensorFlow waits holding the interpreter's lock: a thread here could not act, a process can
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout), message],
                                stdin=subprocess.DEVNULL)
    try:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        if not agree(strategy, 1.0) or strategy.num_replicas_in_sync != len(cluster.workers):  # a barrier
            raise PufError("the workers do not agree on the cluster's size")
    finally:
        watchdog.kill()
        watchdog.wait()
    return strategy


def agree(strategy, value: float) -> bool:
    """Whether every worker holds the same `value` (n * sum(x^2) == sum(x)^2, exact for
    whole numbers); a barrier too."""
    import tensorflow as tf

    @tf.function
    def sums():
        def each():
            x = tf.constant([value, value * value], tf.float64)
            return tf.distribute.get_replica_context().all_reduce("SUM", x)
        return strategy.experimental_local_results(strategy.run(each))[0]

    total, squares = (float(v) for v in sums())
    return strategy.num_replicas_in_sync * squares == total * total


def average_state(strategy, variables: list) -> None:
    """Make every worker hold the mean of the workers' values. Batch-norm statistics are
    updated by each worker from its own shard of the data: averaged at every checkpoint,
    evaluation and the end, the workers' models stay identical."""
    import tensorflow as tf

    variables = [v for v in variables if v.dtype.startswith("float")]
    if strategy.num_replicas_in_sync == 1 or not variables:
        return

    @tf.function
    def mean():
        def each():
            return tf.distribute.get_replica_context().all_reduce("MEAN", [tf.identity(v.value) for v in variables])
        return strategy.experimental_local_results(strategy.run(each))[0]

    for variable, value in zip(variables, mean(), strict=True):
        variable.assign(value)
