"""run_exp.py as a script, end to end, against a real MLflow store in a temp folder."""

import os
import signal
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, TINY, run_script


def only_run(uri, experiment="mnist1d"):
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def artifact_paths(client, run_id, path=None):
    paths = []
    for info in client.list_artifacts(run_id, path):
        paths += artifact_paths(client, run_id, info.path) if info.is_dir else [info.path]
    return paths


def test_tiny_run_logs_everything(store, tmp_path):
    result = run_script("run_exp.py", *TINY, "run_name=1e3", "seed=3")
    assert result.returncode == 0, result.stderr
    assert "step 30/30 | train_loss" in result.stdout

    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "1e3"
    assert run.info.run_id in result.stdout

    params = run.data.params
    assert params["model"] == "mlp"
    assert params["steps"] == "30"
    assert params["seed"] == "3"
    assert params["lr"] == "0.01"
    assert params["width"] == "None"

    train_loss = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in train_loss) == list(range(1, 31))
    test_accuracy = client.get_metric_history(run.info.run_id, "test_accuracy")
    assert sorted(m.step for m in test_accuracy) == [10, 20, 30]
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    assert run.data.metrics["train_seconds"] > 0

    tags = run.data.tags
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert tags["git_dirty"] in ("true", "false")
    assert tags["python_version"].startswith("3.")
    for name in ("torch_version", "mlflow_version", "host", "config_hash"):
        assert tags[name]

    artifacts = artifact_paths(client, run.info.run_id)
    assert "config.yaml" in artifacts
    assert "source/run_exp.py" in artifacts
    assert (tags["git_dirty"] == "true") == ("git_diff.patch" in artifacts)
    config_text = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    assert "run_name: 1e3" in open(config_text).read().replace("'", "")
    assert str(tmp_path / "mlruns") in run.info.artifact_uri


def test_same_seed_same_metrics(store):
    for _ in range(2):
        assert run_script("run_exp.py", *TINY, "seed=5").returncode == 0
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("mnist1d").experiment_id])
    histories = [
        [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss")]
        for run in runs
    ]
    assert sorted(histories[0]) == sorted(histories[1])
    assert runs[0].data.metrics["test_accuracy"] == runs[1].data.metrics["test_accuracy"]


def test_diverged_run_is_failed_with_traceback(store, tmp_path):
    result = run_script("run_exp.py", "model=mlp", "lr=1e30", "steps=20", "eval_every=5")
    assert result.returncode != 0
    assert "training diverged" in result.stderr

    client, run = only_run(store)
    assert run.info.status == "FAILED"
    traceback_file = client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path))
    assert "FloatingPointError" in open(traceback_file).read()
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(1, 6)), "metrics logged before the failure are kept"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_marks_run_killed(store, signum):
    process = subprocess.Popen(
        [sys.executable, "run_exp.py", "--", "model=mlp", "steps=20000", "eval_every=100"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    try:
        for line in process.stdout:
            if "200/20000 |" in line:
                break
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode != 0

    client, run = only_run(store)
    assert run.info.status == "KILLED"
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")}
    assert {100, 200} <= steps
