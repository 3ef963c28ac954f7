"""Grid sweeps: each experiment is one `python run_exp.py -- key=value ...` job through submitit.

`submit()` checks every experiment against the notebook's Config and creates the MLflow
store and experiment once. It skips experiments that already have a FINISHED run with the
same config, submits the rest without waiting, and writes a manifest. `load_manifest()`
reattaches to that manifest from any later process, and `sweep_status()` joins job state
and run status.
"""

import contextlib
import dataclasses
import difflib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import submitit

from lib import PROJECT_ROOT, tracking
from lib.config import ConfigError, base_type, config_hash, field_types, parse_overrides, type_name
from lib.jobs import ERROR_TAIL_LINES, ExperimentCommand, process_alive

log = logging.getLogger(__name__)

SWEEPS_DIR = PROJECT_ROOT / "sweeps"
EXECUTORS = ("local", "slurm", "debug")
NO_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local executor kills a job after 2 minutes by default


class SweepError(ValueError):
    """A sweep definition or submission that cannot go ahead."""


@contextlib.contextmanager
def exit_on_sweep_error(in_notebook):
    """As a script, print a SweepError and exit with status 2; in a notebook, let it show."""
    try:
        yield
    except SweepError as error:
        if in_notebook:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


@dataclasses.dataclass
class Resources:
    """Job size and placement. Slurm reads every field; the local executor reads threads and max_parallel."""

    threads: int = 1  # CPU threads per job, passed to run_exp.py as threads=
    max_parallel: int = 0  # jobs at once; 0: local cores // threads, Slurm: no cap
    partition: str = ""  # Slurm partition; empty: the cluster's default
    time_min: int = 60  # Slurm time limit per job, in minutes
    signal_delay_s: int = 90  # Slurm: seconds before the time limit at which the checkpoint signal is sent
    gpus: int = 0  # GPUs per job
    mem_gb: float = 2.0  # memory per job, in GiB
    sbatch: dict = dataclasses.field(default_factory=dict)  # extra sbatch options, e.g. {"qos": "low"}


def experiment_overrides(experiment):
    """Return the `key=value` overrides of one experiment dataclass."""
    return [f"{key}={_format_value(value)}" for key, value in dataclasses.asdict(experiment).items()]


def experiment_name(experiment):
    """Return a run name that says what varies: `model=cnn,lr=0.01,seed=1`."""
    return ",".join(experiment_overrides(experiment))


def _format_value(value):
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    return str(value)


def check_experiments(config_cls, experiments):
    """Raise SweepError unless every experiment's fields are Config fields of the same type
    and every value passes the Config's own checks."""
    if not experiments:
        raise SweepError("the sweep has no experiments; build at least one")
    valid = field_types(config_cls)
    for name, field_type in field_types(type(experiments[0])).items():
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SweepError(
                f"Experiment field {name!r} is not a Config field.{hint} "
                f"Valid fields: {', '.join(valid)}"
            )
        # A str field may stand for a Literal one: the values are checked below.
        if base_type(field_type) != base_type(valid[name]):
            raise SweepError(
                f"Experiment field {name!r} has type {type_name(field_type)}, "
                f"but Config declares {type_name(valid[name])}"
            )
    for experiment in experiments:
        try:
            parse_overrides(config_cls, experiment_overrides(experiment))
        except ConfigError as error:
            raise SweepError(f"experiment {experiment_name(experiment)}: {error}") from None


@dataclasses.dataclass
class Manifest:
    """The record that a later process reattaches to a sweep with, saved as sweeps/<name>/manifest.json."""

    name: str
    script: str
    executor: str
    tracking_uri: str
    experiment_id: str
    log_folder: str
    jobs: list  # one dict per submission: run_name, overrides, config_hash, job_id, submitted

    @property
    def path(self):
        return Path(self.log_folder).parent / "manifest.json"

    def save(self):
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        partial.replace(self.path)

    def latest_jobs(self):
        """Return {run_name: the newest job entry}, since a rerun adds entries."""
        return {job["run_name"]: job for job in self.jobs}


def manifest_path(name, sweeps_dir=SWEEPS_DIR):
    return Path(sweeps_dir) / name / "manifest.json"


def load_manifest(name, sweeps_dir=SWEEPS_DIR):
    """Return the Manifest of sweep `name`, or None if it was never submitted.

    Raises SweepError if the sweep was submitted to another MLflow store than the current
    one, whose runs this process would not see.
    """
    path = manifest_path(name, sweeps_dir)
    if not path.exists():
        return None
    manifest = Manifest(**json.loads(path.read_text()))
    if manifest.tracking_uri != tracking.tracking_uri():
        raise SweepError(
            f"sweep {name!r} was submitted to the MLflow store {manifest.tracking_uri}, but "
            f"MLFLOW_TRACKING_URI now selects {tracking.tracking_uri()}. Set it back, or pick "
            f"another sweep name (or delete {path.parent} to start this one afresh)"
        )
    return manifest


def submit(
    name,
    experiments,
    config_cls,
    script="run_exp.py",
    executor="local",
    resources=None,
    force=False,
    overrides_for_all=(),
    sweeps_dir=SWEEPS_DIR,
):
    """Submit every experiment that has no FINISHED run with the same config; return the Manifest.

    Returns at once: jobs run in the background and outlive this process. Experiments whose
    job is still queued or running are not submitted twice, so a rerun submits exactly the
    failed and missing ones. `force=True` reruns everything. `overrides_for_all` are
    `key=value` overrides added to every experiment, such as `steps=1000`.
    """
    resources = resources or Resources()
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise SweepError(
            "executor 'slurm' needs Slurm's sbatch, which is not on PATH. Run on a cluster "
            "login node, start a one-node test cluster with `slurm/start.sh`, or use executor=local"
        )
    check_experiments(config_cls, experiments)

    # Create the store and the experiment here, once: 16 jobs opening a new SQLite store at
    # once corrupted it for good, and jobs racing to create the experiment filed some runs
    # under Default (both seen with MLflow 3.17).
    base = parse_overrides(config_cls, [])
    client = tracking.MlflowClient(tracking.tracking_uri())
    experiment_id = tracking.get_or_create_experiment(client, base.experiment_name)

    manifest = load_manifest(name, sweeps_dir) or Manifest(
        name=name,
        script=script,
        executor=executor,
        tracking_uri=tracking.tracking_uri(),
        experiment_id=experiment_id,
        log_folder=str(Path(sweeps_dir) / name / "logs"),
        jobs=[],
    )
    Path(manifest.log_folder).mkdir(parents=True, exist_ok=True)
    done_or_busy = set() if force else _finished_or_busy_hashes(manifest)

    todo = []
    for experiment in experiments:
        run_name = experiment_name(experiment)
        overrides = experiment_overrides(experiment) + list(overrides_for_all) + [
            f"run_name={run_name}",
            f"sweep={name}",
            f"threads={resources.threads}",
        ]
        try:
            config = parse_overrides(config_cls, overrides)
        except ConfigError as error:
            raise SweepError(f"experiment {run_name}: {error}") from None
        digest = config_hash(config)
        if digest not in done_or_busy:
            todo.append({"run_name": run_name, "overrides": overrides, "config_hash": digest})
    log.info("sweep %s: %d of %d experiments to submit", name, len(todo), len(experiments))
    if not todo:
        return manifest

    env = {
        "MLFLOW_TRACKING_URI": manifest.tracking_uri,
        "MLFLOW_EXPERIMENT_ID": manifest.experiment_id,
        "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true"),
    }
    slots = _slot_count(executor, resources)
    commands = [
        ExperimentCommand(
            command=[sys.executable, str(PROJECT_ROOT / script), "--", *job["overrides"]],
            env=env,
            in_process=executor == "debug",
            slots_dir=str(Path(sweeps_dir) / name / "slots") if slots else "",
            slots=slots,
            order=index,
        )
        for index, job in enumerate(todo)
    ]
    submitted = _make_executor(executor, manifest.log_folder, resources, len(todo))
    if executor == "slurm":
        with submitted.batch():  # one job array, capped at resources.max_parallel
            jobs = [submitted.submit(command) for command in commands]
    else:
        jobs = [submitted.submit(command) for command in commands]
    now = time.time()
    for entry, job in zip(todo, jobs):
        entry.update(job_id=str(job.job_id), executor=executor, submitted=now)
        manifest.jobs.append(entry)
    manifest.executor = executor
    manifest.save()
    if executor == "debug":
        for job in jobs:  # debug jobs run here, one after another, when asked for a result
            try:
                job.result()
            except Exception:  # noqa: BLE001 - the status table reports the failed run
                log.exception("debug job %s failed", job.job_id)
    return manifest


def _finished_or_busy_hashes(manifest):
    """Return the config hashes that have a FINISHED run or a job still pending or running."""
    status = sweep_status(manifest)
    hashes = {job["run_name"]: job["config_hash"] for job in manifest.jobs}
    busy = status[status["state"].isin(["pending", "running"])]["run_name"]
    client = tracking.MlflowClient(manifest.tracking_uri)
    finished = client.search_runs(
        [manifest.experiment_id],
        filter_string=f"tags.sweep = '{manifest.name}' and attributes.status = 'FINISHED'",
        max_results=50000,
    )
    return {run.data.tags.get("config_hash") for run in finished} | {hashes[n] for n in busy}


def _slot_count(executor, resources):
    """Return how many local jobs may run at once; 0 means no cap from us."""
    if executor != "local":
        return 0
    if resources.max_parallel > 0:
        return resources.max_parallel
    return max(1, (os.cpu_count() or 1) // resources.threads)


def _make_executor(executor, log_folder, resources, job_count):
    folder = Path(log_folder) / "%j"
    if executor == "slurm":
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        ex.update_parameters(
            timeout_min=resources.time_min,
            cpus_per_task=resources.threads,
            gpus_per_node=resources.gpus,
            mem_gb=resources.mem_gb,
            slurm_array_parallelism=resources.max_parallel or job_count,
            slurm_signal_delay_s=resources.signal_delay_s,
            # run_exp.py requeues itself after a checkpoint; clusters with JobRequeue=0 need this.
            slurm_additional_parameters={"requeue": True, **resources.sbatch},
            **({"slurm_partition": resources.partition} if resources.partition else {}),
        )
        return ex
    ex = submitit.AutoExecutor(folder=folder, cluster=executor)
    ex.update_parameters(timeout_min=NO_TIMEOUT_MIN, gpus_per_node=resources.gpus)
    return ex


def job_state(manifest, job_entry):
    """Return (state, stderr tail) of one job: pending, running, done, failed or gone."""
    folder = Path(manifest.log_folder) / "%j"
    executor = job_entry.get("executor", manifest.executor)
    if executor == "debug":
        return "done", ""  # it ran to its end inside submit(), so the MLflow run status decides
    if executor == "slurm":
        job = submitit.SlurmJob(folder=folder, job_id=job_entry["job_id"])
        slurm_state = job.state.upper()
        if slurm_state == "UNKNOWN":
            slurm_state = _state_without_accounting(job)
        if slurm_state in ("PENDING", "REQUEUED", "CONFIGURING"):
            return "pending", ""
        if slurm_state in ("RUNNING", "COMPLETING"):
            return "running", ""
        if slurm_state == "GONE":
            return "gone", _stderr_tail(job)
        if slurm_state == "COMPLETED" and _outcome(job) == "success":
            return "done", ""
        return "failed", _stderr_tail(job)

    job = submitit.local.local.LocalJob(folder=folder, job_id=job_entry["job_id"])
    if job.paths.result_pickle.exists():
        if _outcome(job) == "success":
            return "done", ""
        return "failed", _stderr_tail(job)
    if process_alive(int(job_entry["job_id"])):
        return "running", ""
    return "gone", _stderr_tail(job)


def _state_without_accounting(job):
    """Return a Slurm state from squeue and the result pickle, for clusters where sacct fails.

    submitit reads job states from sacct, which needs Slurm's accounting; without it every
    job stays UNKNOWN, even one killed outside Python.
    """
    # NOTE: no automated test covers this path: the test cluster of slurm/start.sh has accounting.
    if job.paths.result_pickle.exists():
        return "COMPLETED" if _outcome(job) == "success" else "FAILED"
    try:
        queued = subprocess.run(["squeue", "-h", "-o", "%T", "-j", job.job_id],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "RUNNING"  # squeue failed: assume the job lives rather than call it gone
    states = queued.stdout.split()
    return states[0] if queued.returncode == 0 and states else "GONE"


def _outcome(job):
    try:
        outcome, _ = job._get_outcome_and_result()  # reads the result pickle; no public reader
    except Exception:  # noqa: BLE001 - a missing or partial pickle counts as a failure
        return "error"
    return outcome


def _stderr_tail(job, lines=ERROR_TAIL_LINES + 5):
    text = job.stderr() or ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def sweep_status(manifest):
    """Return one row per experiment: state, job id, MLflow run, last step and metric, error tail.

    States: pending (no run yet), running, finished, failed, and stale for a RUNNING run
    whose job is gone, which no process will ever close.
    """
    columns = ["run_name", "state", "job_id", "run_id", "run_status", "last_step",
               "test_accuracy", "error"]
    latest = manifest.latest_jobs()
    if not latest:
        return pd.DataFrame(columns=columns)
    client = tracking.MlflowClient(manifest.tracking_uri)
    runs = client.search_runs(
        [manifest.experiment_id], filter_string=f"tags.sweep = '{manifest.name}'", max_results=50000
    )
    runs_by_hash = {}
    for run in sorted(runs, key=lambda r: r.info.start_time):
        runs_by_hash[run.data.tags.get("config_hash")] = run  # the newest run wins

    rows = []
    for run_name, entry in latest.items():
        run = runs_by_hash.get(entry["config_hash"])
        job, tail = job_state(manifest, entry)
        row = {"run_name": run_name, "job_id": entry["job_id"], "run_id": None,
               "run_status": None, "last_step": None, "test_accuracy": None, "error": ""}
        if run is not None:
            row.update(run_id=run.info.run_id, run_status=run.info.status,
                       test_accuracy=run.data.metrics.get("test_accuracy"))
        if run is not None and run.info.status == "FINISHED":
            row["state"] = "finished"
        elif job in ("failed", "gone"):
            row["state"] = "stale" if run is not None and run.info.status == "RUNNING" else "failed"
            row["error"] = tail
        elif job == "done":  # the job exited cleanly but left no FINISHED run
            row.update(state="failed", error=tail or "job ended without a FINISHED MLflow run")
        elif run is not None and run.info.status != "RUNNING":
            row["state"] = "running"  # the run failed; its job is still writing its log
        elif run is None:
            row["state"] = "pending"
        else:
            row["state"] = "running"
            history = client.get_metric_history(run.info.run_id, "train_loss")
            row["last_step"] = max((m.step for m in history), default=None)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def wait(manifest, poll_s=5.0, report=print):
    """Block until no experiment is pending or running; report progress on each change."""
    last = None
    while True:
        status = sweep_status(manifest)
        counts = status["state"].value_counts().to_dict()
        summary = ", ".join(f"{counts[s]} {s}" for s in
                            ("finished", "running", "pending", "failed", "stale") if s in counts)
        if summary != last:
            report(f"sweep {manifest.name}: {summary}")
            last = summary
        if not {"pending", "running"} & set(counts):
            return status
        time.sleep(poll_s)
