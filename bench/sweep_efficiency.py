"""Run exp_sweeps.py's default sweep with the local executor and print its efficiency.

Efficiency is the jobs' summed training seconds (the `train_seconds` metric: the training
loop alone) divided by (wall seconds from submit to the last run's end x parallel slots).
It also prints the same ratio for whole job seconds (MLflow run start to end), which
counts each job's start-up inside the run as busy time.

    .venv/bin/python bench/sweep_efficiency.py
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    store = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    from exp_sweeps import build_experiments
    from lib import results, sweeps
    from run_exp import Config

    resources = sweeps.Resources()
    slots = sweeps._slot_count("local", resources)
    experiments = build_experiments()
    start = time.time()
    manifest = sweeps.submit("efficiency", experiments, Config, resources=resources,
                             sweeps_dir=store / "sweeps")
    status = sweeps.wait(manifest, poll_s=1.0)
    runs = results.load_runs(Config, sweep="efficiency")
    end = runs["end_time"].max().timestamp()
    wall = end - start
    train = runs["train_seconds"].sum()
    job = (runs["end_time"] - runs["start_time"]).dt.total_seconds().sum()
    print(status[["run_name", "state", "test_accuracy"]].to_string(index=False))
    print(f"{len(runs)} runs, {slots} slots, wall {wall:.1f}s (submit to last run end)")
    print(f"summed train_seconds {train:.1f}s: efficiency {train / (wall * slots):.3f}")
    print(f"summed run seconds {job:.1f}s: efficiency {job / (wall * slots):.3f}")


if __name__ == "__main__":
    main()
