"""Sweeps through a real Slurm cluster: arrays, preemption, time limits and crashes.

Needs the one-node cluster of slurm/start.sh (root, Debian); .ci/run starts it.
"""

import dataclasses
import shutil
import subprocess
import time

import pytest
from mlflow import MlflowClient

from lib import sweeps
from run_exp import Config


def cluster_up():
    if shutil.which("sinfo") is None:
        return False
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return states.returncode == 0 and any(s in states.stdout for s in ("idle", "mixed", "allocated"))


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not cluster_up(), reason="no Slurm cluster here; start one with `bash slurm/start.sh`"),
]


@dataclasses.dataclass
class Experiment:
    model: str = "mlp"
    lr: float = 0.01
    seed: int = 0


def submit(tmp_path, experiments, overrides, **resources):
    return sweeps.submit(
        f"slurm_{tmp_path.name}", experiments, Config, executor="slurm",
        resources=sweeps.Resources(**resources), overrides_for_all=overrides,
        sweeps_dir=tmp_path / "sweeps",
    )


def wait(manifest, timeout_s=400):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = sweeps.sweep_status(manifest)
        if not status["state"].isin(["pending", "running"]).any():
            return status.set_index("run_name")
        time.sleep(2)
    pytest.fail(f"sweep still running after {timeout_s}s:\n{status.to_string()}")


def wait_for_step(client, manifest, step, timeout_s=180):
    """Return the run of the sweep's only job once it has logged `step`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        runs = client.search_runs([manifest.experiment_id], f"tags.sweep = '{manifest.name}'")
        if runs and "train_loss" in runs[0].data.metrics:
            history = client.get_metric_history(runs[0].info.run_id, "train_loss")
            if max(m.step for m in history) >= step:
                return runs[0]
        time.sleep(0.5)
    pytest.fail(f"no run reached step {step} in {timeout_s}s")


def assert_one_point_per_step(client, run_id, steps):
    logged = [m.step for m in client.get_metric_history(run_id, "train_loss")]
    assert sorted(logged) == list(range(1, steps + 1))


def test_array_sweep_finishes(store, tmp_path):
    manifest = submit(tmp_path, [Experiment(seed=s) for s in range(4)], ["steps=50", "eval_every=25"],
                      max_parallel=2)
    array_ids = {job["job_id"].split("_")[0] for job in manifest.jobs}
    assert len(array_ids) == 1, "all jobs of a sweep go out as one array"
    status = wait(manifest)
    assert list(status["state"]) == ["finished"] * 4
    client = MlflowClient(store)
    runs = client.search_runs([manifest.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    assert all(r.data.tags["slurm_job_id"] for r in runs)


def test_preempted_task_resumes_same_run(store, tmp_path):
    steps = 40000
    manifest = submit(tmp_path, [Experiment()], [f"steps={steps}", "eval_every=500", "checkpoint_every=2000"])
    client = MlflowClient(store)
    run = wait_for_step(client, manifest, 5000)
    subprocess.run(["scancel", "--signal=USR2", manifest.jobs[0]["job_id"]], check=True)

    status = wait(manifest)
    assert status["state"].tolist() == ["finished"]
    runs = client.search_runs([manifest.experiment_id])
    assert len(runs) == 1, "the requeued job reopened the same run"
    assert runs[0].info.run_id == run.info.run_id
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["slurm_requeues"] == "1"
    assert_one_point_per_step(client, run.info.run_id, steps)


def test_time_limit_resumes_and_finishes(store, tmp_path):
    # Slurm sends the warning 60 s (plus up to its 30 s check interval) before the
    # 2-minute limit, so about 100 s of training cannot finish in one attempt.
    steps = 220000
    manifest = submit(tmp_path, [Experiment(model="logistic")],
                      [f"steps={steps}", "eval_every=5000", "checkpoint_every=20000"],
                      time_min=2, signal_delay_s=60)
    status = wait(manifest, timeout_s=600)
    assert status["state"].tolist() == ["finished"], status["error"].tolist()
    client = MlflowClient(store)
    runs = client.search_runs([manifest.experiment_id])
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert int(runs[0].data.tags["slurm_requeues"]) >= 1
    assert_one_point_per_step(client, runs[0].info.run_id, steps)


def test_crash_shows_stderr_tail(store, tmp_path):
    manifest = submit(tmp_path, [Experiment(lr=1e30)], ["steps=20", "eval_every=5"])
    status = wait(manifest)
    assert status["state"].tolist() == ["failed"]
    assert "training diverged" in status["error"].iloc[0]


def test_exhausted_requeues_fail_with_reason(store, tmp_path):
    manifest = submit(tmp_path, [Experiment()], ["steps=40000", "eval_every=500", "max_requeues=0"])
    client = MlflowClient(store)
    run = wait_for_step(client, manifest, 2000)
    subprocess.run(["scancel", "--signal=USR2", manifest.jobs[0]["job_id"]], check=True)

    status = wait(manifest)
    assert status["state"].tolist() == ["failed"]
    assert "after 0 requeues (max_requeues=0)" in status["error"].iloc[0]
    assert client.get_run(run.info.run_id).info.status == "FAILED"
