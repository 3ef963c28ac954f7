"""Time from submitting a one-job sweep to Slurm to its first logged training step.

Needs the one-node cluster of slurm/start.sh. The first step's time is the timestamp MLflow
stored with train_loss at step 1, so polling adds nothing to the figure.

    .venv/bin/python bench/slurm_latency.py --repeats 3
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclasses.dataclass
class Experiment:
    seed: int = 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="sweeps to submit, one after another")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="slurm-latency-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
    from lib import sweeps, tracking
    from run_exp import Config

    client = tracking.MlflowClient(tracking.tracking_uri())
    for repeat in range(args.repeats):
        name = f"latency{repeat}"
        submitted = time.time()
        manifest = sweeps.submit(name, [Experiment(seed=repeat)], Config, executor="slurm",
                                 overrides_for_all=["model=mlp", "steps=50", "eval_every=25"],
                                 sweeps_dir=folder / "sweeps")
        sweeps.wait(manifest, poll_s=1.0, report=lambda line: None)
        run = client.search_runs([manifest.experiment_id], f"tags.sweep = '{name}'")[0]
        first = min(m.timestamp for m in client.get_metric_history(run.info.run_id, "train_loss"))
        start = run.info.start_time / 1000
        print(f"job {manifest.jobs[0]['job_id']}: submit to run start {start - submitted:.1f}s, "
              f"submit to first step {first / 1000 - submitted:.1f}s", flush=True)


if __name__ == "__main__":
    main()
