"""Time loading metric histories of many runs: lib.results.load_histories against a loop of
MLflow's get_metric_history on the same store.

Builds a SQLite store of `--runs` runs x 3 metrics x `--steps` steps in a temporary folder
(about 30 s for 1000 runs), then times both readers.

    .venv/bin/python bench/load_histories.py --runs 1000 --steps 100
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

METRICS = ("train_loss", "test_loss", "test_accuracy")


def build_store(client, runs, steps):
    from mlflow.entities import Metric

    from lib import tracking

    experiment_id = tracking.get_or_create_experiment(client, "history-benchmark")
    run_ids = []
    now = int(time.time() * 1000)
    for index in range(runs):
        run_id = client.create_run(experiment_id, run_name=f"run{index}").info.run_id
        metrics = [Metric(key, index + step / steps, now, step) for key in METRICS for step in range(steps)]
        client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id)
        run_ids.append(run_id)
    return run_ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the store")
    parser.add_argument("--steps", type=int, default=100, help="steps per metric")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="history-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    from lib import results, tracking

    client = tracking.MlflowClient(tracking.tracking_uri())
    start = time.perf_counter()
    run_ids = build_store(client, args.runs, args.steps)
    print(f"built {args.runs} runs x {len(METRICS)} metrics x {args.steps} steps "
          f"in {time.perf_counter() - start:.1f}s", flush=True)

    start = time.perf_counter()
    frame = results.load_histories(run_ids, METRICS)
    ours = time.perf_counter() - start
    print(f"load_histories: {len(frame):,} rows in {ours:.3f}s", flush=True)

    start = time.perf_counter()
    rows = sum(len(client.get_metric_history(r, m)) for r in run_ids for m in METRICS)
    loop = time.perf_counter() - start
    print(f"get_metric_history loop: {rows:,} rows in {loop:.3f}s ({loop / ours:.0f}x slower)")


if __name__ == "__main__":
    main()
