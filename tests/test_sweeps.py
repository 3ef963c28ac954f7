"""Sweeps through the real submitit local executor against a temporary MLflow store."""

import dataclasses
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from mlflow import MlflowClient

from lib import results, sweeps
from run_exp import Config
from tests.conftest import run_script

TINY_FOR_ALL = ["steps=20", "eval_every=10"]


@dataclasses.dataclass
class Experiment:
    model: Literal["logistic", "mlp", "cnn", "gru"] = "mlp"
    lr: float = 0.01
    seed: int = 0


def submit(tmp_path, experiments, **kwargs):
    return sweeps.submit(
        "test_sweep", experiments, Config, overrides_for_all=TINY_FOR_ALL,
        sweeps_dir=tmp_path / "sweeps", **kwargs,
    )


def wait(manifest):
    return sweeps.wait(manifest, poll_s=0.5, report=lambda line: None).set_index("run_name")


def test_sweep_runs_skips_and_reports_failure(store, tmp_path):
    experiments = [Experiment(seed=0), Experiment(seed=1), Experiment(lr=1e30)]
    manifest = submit(tmp_path, experiments)
    assert len(manifest.jobs) == 3
    assert manifest.path.exists()

    status = wait(sweeps.load_manifest("test_sweep", tmp_path / "sweeps"))
    assert status.loc["model=mlp,lr=0.01,seed=0", "state"] == "finished"
    assert status.loc["model=mlp,lr=0.01,seed=1", "state"] == "finished"
    failed = status.loc["model=mlp,lr=1e+30,seed=0"]
    assert failed["state"] == "failed"
    assert "training diverged" in failed["error"]

    client = MlflowClient(store)
    experiment_id = client.get_experiment_by_name("mnist1d").experiment_id
    assert manifest.experiment_id == experiment_id
    runs = client.search_runs([experiment_id], "tags.sweep = 'test_sweep'")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    assert {r.info.run_name for r in runs} == set(status.index)

    # A rerun submits only the failed experiment; with force, all of them.
    rerun = submit(tmp_path, experiments)
    assert [job["run_name"] for job in rerun.jobs[3:]] == ["model=mlp,lr=1e+30,seed=0"]
    wait(rerun)
    forced = submit(tmp_path, experiments[:1], force=True)
    assert len(forced.jobs) == 5
    wait(forced)


def test_rerun_of_finished_sweep_submits_nothing(store, tmp_path):
    experiments = [Experiment(seed=0)]
    wait(submit(tmp_path, experiments))
    again = submit(tmp_path, experiments)
    assert len(again.jobs) == 1


def test_max_parallel_one_runs_jobs_in_turn(store, tmp_path):
    manifest = submit(tmp_path, [Experiment(seed=s) for s in range(3)],
                      resources=sweeps.Resources(max_parallel=1))
    wait(manifest)
    runs = results.load_runs(Config, sweep="test_sweep").sort_values("start_time")
    assert list(runs["status"]) == ["FINISHED"] * 3
    assert list(runs["seed"]) == [0, 1, 2], "jobs start in submission order"
    for earlier, later in zip(runs.itertuples(), runs.iloc[1:].itertuples()):
        assert earlier.end_time <= later.start_time


def test_results_types_and_histories(store, tmp_path):
    experiments = [Experiment(model="logistic", lr=lr) for lr in (0.1, 0.01)]
    wait(submit(tmp_path, experiments))

    runs = results.load_runs(Config, sweep="test_sweep")
    assert runs["lr"].dtype == "float64"
    assert runs["steps"].dtype == "Int64"
    assert runs["width"].isna().all()
    assert isinstance(runs["model"].dtype, pd.CategoricalDtype)
    assert list(runs["model"].cat.categories) == ["logistic", "mlp", "cnn", "gru"]
    assert runs.sort_values("lr")["lr"].tolist() == [0.01, 0.1]
    assert runs["test_accuracy"].dtype == "float64"

    histories = results.load_histories(runs["run_id"])
    assert list(histories.columns) == ["run_id", "metric", "step", "value"]
    client = MlflowClient(store)
    for run_id in runs["run_id"]:
        for metric in ("train_loss", "test_accuracy"):
            expected = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
            rows = histories[(histories["run_id"] == run_id) & (histories["metric"] == metric)]
            assert list(zip(rows["step"], rows["value"])) == expected

    chart = results.metric_chart(runs, "model", "test_accuracy")
    paths = results.save_chart(chart, tmp_path / "figure")
    assert paths[0].read_text().startswith("<svg")
    assert paths[1].read_bytes()[:4] == b"\x89PNG"


def test_unknown_experiment_field_is_rejected():
    @dataclasses.dataclass
    class Bad:
        learning_rate: float = 0.1

    with pytest.raises(sweeps.SweepError, match="Valid fields: model, width, lr"):
        sweeps.check_experiments(Config, [Bad()])


def test_wrong_experiment_type_is_rejected():
    @dataclasses.dataclass
    class Bad:
        steps: float = 0.5

    with pytest.raises(sweeps.SweepError, match="type float, but Config declares int"):
        sweeps.check_experiments(Config, [Bad()])


def test_invalid_experiment_value_is_rejected(store, tmp_path):
    with pytest.raises(sweeps.SweepError, match="steps must be at least 1"):
        sweeps.check_experiments(Config, [dataclasses.make_dataclass("E", [("steps", int, 0)])()])
    assert not (tmp_path / "mlflow.db").exists()


def test_slurm_without_slurm_says_how(store, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # hides sbatch if installed
    assert shutil.which("sbatch") is None
    with pytest.raises(sweeps.SweepError, match="slurm/start.sh"):
        submit(tmp_path, [Experiment()], executor="slurm")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.fixture
def script_sweep_name():
    """A sweep name no other test session uses; its folder under sweeps/ is removed after."""
    name = f"test_script_{uuid.uuid4().hex[:8]}"
    yield name
    shutil.rmtree(sweeps.SWEEPS_DIR / name, ignore_errors=True)


def test_exp_sweeps_script_runs_and_reruns(store, script_sweep_name):
    sweep = [f"sweep={script_sweep_name}", "overrides=[steps=20,eval_every=10]", "wait=true"]
    first = run_script("exp_sweeps.py", *sweep, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "12 finished" in first.stdout
    for model in ("logistic", "mlp", "cnn", "gru"):
        assert model in first.stdout.split("test_accuracy_mean")[-1]

    second = run_script("exp_sweeps.py", *sweep, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    table = first.stdout.split("test_accuracy_mean")[-1].split("figures:")[0]
    assert table == second.stdout.split("test_accuracy_mean")[-1].split("figures:")[0]
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("mnist1d").experiment_id])
    assert len(runs) == 12, "the rerun submitted nothing"


def test_killed_job_leaves_stale_run(store, tmp_path):
    long_run = sweeps.submit(
        "stale_sweep", [Experiment(seed=8)], Config, overrides_for_all=["steps=100000", "eval_every=100"],
        sweeps_dir=tmp_path / "sweeps",
    )
    client = MlflowClient(store)
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = client.search_runs([long_run.experiment_id], "tags.sweep = 'stale_sweep'")
        if runs and "test_accuracy" in runs[0].data.metrics:
            break
        time.sleep(0.5)
    # SIGKILL leaves no chance to close the run, as when a node dies.
    subprocess.run(["pkill", "-KILL", "-f", "sweep=stale_sweep"], check=True)

    status = wait(long_run)
    row = status.loc["model=mlp,lr=0.01,seed=8"]
    assert row["state"] == "stale"
    assert row["run_status"] == "RUNNING"
    assert "status -9" in row["error"]


def test_exp_sweeps_script_rejects_bad_override(store, script_sweep_name):
    result = run_script("exp_sweeps.py", f"sweep={script_sweep_name}", "overrides=[stepz=10]")
    assert result.returncode == 2
    assert "unknown config key 'stepz'" in result.stderr
    assert "Traceback" not in result.stderr


def test_manifest_of_other_store_is_rejected(store, tmp_path, monkeypatch):
    wait(submit(tmp_path, [Experiment()]))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/other.db")
    with pytest.raises(sweeps.SweepError, match="was submitted to the MLflow store"):
        sweeps.load_manifest("test_sweep", tmp_path / "sweeps")
