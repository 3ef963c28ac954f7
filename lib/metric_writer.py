"""A child process that writes an MLflow run's metrics, so that the training process does not
wait on database writes. It blocks only if the writer falls a whole pipe buffer behind.

Writing one metric through MLflow's SQLAlchemy store costs about 0.1 ms of Python time
(MLflow 3.17, SQLite). A writer thread in the training process would hold the GIL for that
long: 20% slower MLP training when every step logs (bench/logging_overhead.py). A process
uses another core instead.

Protocol: the writer prints "ready" once its imports are done, then reads one JSON list of
[key, value, timestamp_ms, step] rows per line on stdin. At end of input (the parent closed
the pipe or died), it exits; exit status 0 means every row it received is in the store.

    python -m lib.metric_writer TRACKING_URI RUN_ID
"""

import json
import os
import signal
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

MAX_BATCH = 1000  # MLflow's limit on metrics per log_batch call


def main(tracking_uri, run_id):
    # Ctrl-C in a terminal and Slurm's signals reach every process of the job, this one
    # too. Only the parent decides when the run ends: it closes the pipe, and this process
    # then stores what it has and exits.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    client = MlflowClient(tracking_uri)
    print("ready", flush=True)
    for line in sys.stdin:
        rows = json.loads(line)
        for start in range(0, len(rows), MAX_BATCH):
            metrics = [Metric(*row) for row in rows[start : start + MAX_BATCH]]
            client.log_batch(run_id, metrics=metrics)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m lib.metric_writer TRACKING_URI RUN_ID (got {sys.argv[1:]})")
    main(sys.argv[1], sys.argv[2])
