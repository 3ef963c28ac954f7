"""MLflow tracking: one run per execution, buffered metrics, and a final status on every exit.

The default store is `sqlite:///<project root>/mlflow.db` with artifacts under
`<project root>/mlruns/`, whatever the current directory, so `mlflow ui` started in the
project root shows every run. `MLFLOW_TRACKING_URI` overrides it (a server, or another
SQLite file whose artifacts then go to an `mlruns/` folder beside it).
"""

import contextlib
import dataclasses
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

# MLflow's telemetry makes an outbound request at start-up, which fails on offline cluster
# nodes. A race in its thread also crashed one of 32 concurrent runs (seen with MLflow 3.17).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from lib import PROJECT_ROOT  # noqa: E402
from lib.checkpoint import Requeued  # noqa: E402
from lib.config import config_hash, flatten  # noqa: E402

DEFAULT_TRACKING_URI = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


class Terminated(BaseException):
    """SIGTERM arrived during a run. A BaseException, like KeyboardInterrupt, so that
    `except Exception` in user code does not swallow it."""


def tracking_uri():
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def artifact_root(uri):
    """Return where a new experiment's artifacts go: `mlruns/` beside a SQLite file, or
    None to let a tracking server choose."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlruns"
    return None


def get_or_create_experiment(client, name):
    """Return the id of experiment `name`, creating it (with its artifact folder) if needed."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = artifact_root(client.tracking_uri)
    location = (root / name).as_uri() if root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another process created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class Run:
    """An open MLflow run. Metrics are buffered in memory and sent by `flush()` to a writer
    process (lib/metric_writer.py), so logging every step costs microseconds and the
    database writes run on another core."""

    def __init__(self, client, run_id, experiment_id):
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._buffer = []
        self.last_logged_step = {}  # {metric: step} already in the store of a reopened run
        self._writer = subprocess.Popen(
            [sys.executable, "-m", "lib.metric_writer", client.tracking_uri, run_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=PROJECT_ROOT,
            text=True,
        )

    def wait_until_ready(self):
        """Block until the writer has imported MLflow (about a second of CPU), so that its
        start-up does not compete with the first training steps."""
        if self._writer.stdout.readline().strip() != "ready":
            raise RuntimeError(
                f"the metric writer of run {self.run_id} failed to start "
                f"(exit status {self._writer.wait()}); its error is printed above"
            )

    def log_metrics(self, metrics, step):
        """Buffer {name: value} at `step`; `flush()` sends them to the store."""
        timestamp = int(time.time() * 1000)
        for key, value in metrics.items():
            if step > self.last_logged_step.get(key, -1):
                self._buffer.append((key, float(value), timestamp, step))

    def flush(self):
        """Send the buffered metrics to the writer process, which stores them in the background."""
        if not self._buffer:
            return
        if self._writer.poll() is not None:
            raise RuntimeError(
                f"the metric writer of run {self.run_id} exited with status "
                f"{self._writer.returncode}; its error is printed above"
            )
        self._writer.stdin.write(json.dumps(self._buffer) + "\n")
        self._writer.stdin.flush()
        self._buffer = []

    def _close_writer(self):
        """Send the last metrics, then wait until the writer has stored them all."""
        try:
            self.flush()
        finally:
            self._writer.stdin.close()
            status = self._writer.wait()
        if status != 0:
            raise RuntimeError(
                f"the metric writer of run {self.run_id} exited with status {status}; "
                "some metrics may be missing, and its error is printed above"
            )

    def log_text(self, text, artifact_file):
        self.client.log_text(self.run_id, text, artifact_file)

    def set_tags(self, tags):
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def detach(self):
        """Store what is left but leave the run RUNNING, for a requeued job to reopen."""
        self._close_writer()

    def end(self, status, error_text=None):
        """Store what is left, save `error_text` as traceback.txt, and set the final status."""
        try:
            if error_text:
                self.log_text(error_text, "traceback.txt")
            self._close_writer()
        finally:
            self.client.set_terminated(self.run_id, status)

    @property
    def url_path(self):
        return f"#/experiments/{self.experiment_id}/runs/{self.run_id}"


@contextlib.contextmanager
def start_run(config, source=None, experiment_id=None, resume_run_id=None):
    """Open an MLflow run for `config` and close it with the right status on any exit.

    FINISHED on success; FAILED on an exception, with traceback.txt saved; KILLED on
    Ctrl-C or SIGTERM. Buffered metrics are written in each case. The experiment is
    `config.experiment_name` unless `experiment_id` (or MLFLOW_EXPERIMENT_ID, set by the
    sweep launcher) names one.

    `resume_run_id` reopens that run after a Slurm requeue instead of creating one: its
    params are not logged again, and steps it already has are not logged twice. If the
    block raises Requeued, the run stays RUNNING for the requeued job and the process exits.
    """
    client = MlflowClient(tracking_uri())
    if resume_run_id:
        run = _reopen(client, resume_run_id)
    else:
        experiment_id = experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
        if not experiment_id:
            experiment_id = get_or_create_experiment(client, config.experiment_name)
        run_name = config.run_name or time.strftime("%Y%m%d-%H%M%S")
        created = client.create_run(experiment_id, run_name=run_name, tags=run_tags(config, source))
        run = Run(client, created.info.run_id, experiment_id)

    # Closing the run must not depend on MLflow's exit hook: outside a fluent
    # `with mlflow.start_run()` it marks a crashed run FINISHED, and Python's default
    # SIGTERM handler exits without running it (both seen with MLflow 3.17).
    with _sigterm_raises_terminated():
        try:
            if not resume_run_id:
                log_config(run, config, source)
            run.wait_until_ready()
            yield run
        except Requeued as requeued:
            run.detach()
            print(f"{requeued}; MLflow run {run.run_id} stays RUNNING until it resumes", flush=True)
            raise SystemExit(0) from None
        except (KeyboardInterrupt, Terminated):
            run.end("KILLED", traceback.format_exc())
            raise
        except BaseException:
            run.end("FAILED", traceback.format_exc())
            raise
        else:
            run.end("FINISHED")


def _reopen(client, run_id):
    """Return a Run for an existing run, set back to RUNNING, that skips steps it already has."""
    existing = client.get_run(run_id)
    run = Run(client, run_id, existing.info.experiment_id)
    for key in existing.data.metrics:
        run.last_logged_step[key] = max(m.step for m in client.get_metric_history(run_id, key))
    client.update_run(run_id, status="RUNNING")
    run.set_tags({"slurm_requeues": os.environ.get("SLURM_RESTART_COUNT", "0")})
    return run


def log_config(run, config, source):
    """Log the config as params and config.yaml, the source file, and the uncommitted diff."""
    values = flatten(dataclasses.asdict(config))
    params = [Param(key, str(value)) for key, value in values.items()]
    run.client.log_batch(run.run_id, params=params)
    run.log_text(OmegaConf.to_yaml(OmegaConf.structured(config)), "config.yaml")
    if source is not None:
        run.log_text(Path(source).read_text(), f"source/{Path(source).name}")
    diff = _git("diff", "HEAD")
    if diff:
        run.log_text(diff, "git_diff.patch")


def run_tags(config, source):
    """Return the tags that record where and how a run ran: code version, host, library versions."""
    import torch

    commit = _git("rev-parse", "HEAD")
    tags = {
        "mlflow.source.name": str(source or sys.argv[0]),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": commit or "unknown",
        "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
        "config_hash": config_hash(config),
        "host": socket.gethostname(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "mlflow_version": mlflow.__version__,
    }
    if getattr(config, "sweep", ""):
        tags["sweep"] = config.sweep
    for variable in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        if variable in os.environ:
            tags[variable.lower()] = os.environ[variable]
    if "SLURM_JOB_ID" in os.environ:
        tags["slurm_requeues"] = os.environ.get("SLURM_RESTART_COUNT", "0")
    return tags


def _git(*args):
    """Return git's stripped output in the project root, or "" outside a repository."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


@contextlib.contextmanager
def _sigterm_raises_terminated():
    """Turn SIGTERM into a Terminated exception while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def browse_hint(run):
    """Return the command and address that show `run` in the MLflow UI."""
    uri = run.client.tracking_uri
    if uri.startswith("http"):
        return f"{uri.rstrip('/')}/{run.url_path}"
    if uri == DEFAULT_TRACKING_URI:
        command = f"cd {PROJECT_ROOT} && mlflow ui"
    else:
        command = f"mlflow ui --backend-store-uri {uri}"
    return f"{command}, then open http://127.0.0.1:5000/{run.url_path}"
