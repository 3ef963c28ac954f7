"""Compare the MLP training loop with per-step MLflow logging through lib/ against no logging.

Runs the two variants alternately, `--pairs` times each, against a fresh SQLite store in a
temporary folder, and prints the per-pair and median time ratio (logged / unlogged).

    .venv/bin/python bench/logging_overhead.py --pairs 5 --threads 1
"""

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.data import load_mnist1d  # noqa: E402
from lib.models import build_model  # noqa: E402


@dataclasses.dataclass
class BenchConfig:
    model: str = "mlp"
    steps: int = 6000
    eval_every: int = 250
    batch_size: int = 100
    seed: int = 0
    run_name: str = "logging-benchmark"
    experiment_name: str = "logging-benchmark"
    sweep: str = ""


def train(config, data, run):
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        batch = torch.randint(len(data["y"]), (config.batch_size,), generator=generator)
        loss = F.cross_entropy(model(data["x"][batch]), data["y"][batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_loss = loss.item()
        if run is not None:
            run.log_metrics({"train_loss": train_loss}, step=step)
        if step % config.eval_every == 0:
            with torch.no_grad():
                logits = model(data["x_test"])
                test_loss = F.cross_entropy(logits, data["y_test"]).item()
                accuracy = (logits.argmax(1) == data["y_test"]).float().mean().item()
            if run is not None:
                run.log_metrics({"test_loss": test_loss, "test_accuracy": accuracy}, step=step)
                run.flush()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="logged/unlogged pairs to time")
    parser.add_argument("--steps", type=int, default=6000, help="training steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, as run_exp.py's default")
    args = parser.parse_args()

    store = tempfile.mkdtemp(prefix="logging-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    from lib import tracking  # reads MLFLOW_TRACKING_URI when a run starts

    torch.set_num_threads(args.threads)
    config = BenchConfig(steps=args.steps)
    data = load_mnist1d()
    with tracking.start_run(config):  # creates the store so that its cost is not timed
        pass
    train(config, data, None)  # warm-up, not timed

    ratios = []
    for pair in range(args.pairs):
        plain = train(config, data, None)
        with tracking.start_run(config) as run:
            logged = train(config, data, run)
        ratios.append(logged / plain)
        print(f"pair {pair + 1}: unlogged {plain:.3f}s, logged {logged:.3f}s, ratio {ratios[-1]:.3f}", flush=True)
    print(f"median ratio over {args.pairs} pairs: {statistics.median(ratios):.3f} "
          f"({args.steps} MLP steps, {torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
