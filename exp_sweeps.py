import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")

with app.setup:
    import itertools
    from dataclasses import asdict, dataclass, field
    from typing import List, Literal

    import altair as alt
    import marimo as mo
    import pandas as pd

    from lib import results, sweeps
    from lib.config import config_from_cli
    from run_exp import Config


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # Sweeps over run_exp.py

    Define a grid of experiments, submit each as `python run_exp.py -- key=value ...` through
    submitit (local processes, Slurm, or in this process for debugging), watch it, and read
    the MLflow runs back as a table and figures. Jobs outlive this notebook: reopening it
    rebuilds the status from the sweep's manifest and MLflow.

    - `marimo run exp_sweeps.py` serves it as an app.
    - `python exp_sweeps.py -- sweep=mnist1d_baselines wait=true` submits, waits and prints
      the results; `python exp_sweeps.py --help` lists the settings.
    """)
    return


@app.class_definition
@dataclass
class Settings:
    sweep: str = "mnist1d_baselines"  # tags every run and names the folder sweeps/<sweep>/
    executor: Literal["local", "slurm", "debug"] = "local"  # debug runs jobs in this process
    force: bool = False  # rerun experiments that already have a FINISHED run
    wait: bool = False  # script: wait for every job, then print the results
    threads: int = 1  # CPU threads per job
    max_parallel: int = 0  # jobs at once; 0: cores // threads locally, no cap on Slurm
    partition: str = ""  # Slurm partition; empty: the cluster's default
    time_min: int = 60  # Slurm time limit per job, in minutes
    gpus: int = 0  # GPUs per job
    mem_gb: float = 2.0  # Slurm memory per job, in GiB
    overrides: List[str] = field(default_factory=list)  # added to every experiment, e.g. [steps=1000]


@app.class_definition
@dataclass
class Experiment:
    """The Config fields this sweep varies; every other field keeps run_exp.py's default."""

    model: Literal["logistic", "mlp", "cnn", "gru"] = "cnn"
    seed: int = 0


@app.function
def build_experiments():
    """The MNIST-1D paper's baseline table: four models, three seeds each."""
    models = ["gru", "cnn", "mlp", "logistic"]  # slowest first, so no slot idles at the end
    seeds = [0, 1, 2]
    return [Experiment(model=m, seed=s) for m, s in itertools.product(models, seeds)]


@app.cell
def _():
    PAPER_ACCURACY = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}  # Greydanus and Kobak, 2020

    settings = config_from_cli(Settings)
    experiments = build_experiments()
    with sweeps.exit_on_sweep_error(mo.running_in_notebook()):
        sweeps.check_experiments(Config, experiments)  # names the bad field before anything runs
    resources = sweeps.Resources(
        threads=settings.threads,
        max_parallel=settings.max_parallel,
        partition=settings.partition,
        time_min=settings.time_min,
        gpus=settings.gpus,
        mem_gb=settings.mem_gb,
    )
    mo.vstack([
        mo.md(f"**Sweep `{settings.sweep}`**: {len(experiments)} experiments on `{settings.executor}`"),
        mo.ui.table(pd.DataFrame([asdict(e) for e in experiments]), selection=None),
    ])
    return PAPER_ACCURACY, experiments, resources, settings


@app.cell
def _():
    submit_button = mo.ui.run_button(label="Submit sweep")
    submit_button if mo.running_in_notebook() else None
    return (submit_button,)


@app.cell
def _(experiments, resources, settings, submit_button):
    # As a script, submit at once; in the app, on the button. Either way, skip what is done.
    with sweeps.exit_on_sweep_error(mo.running_in_notebook()):
        if submit_button.value or not mo.running_in_notebook():
            manifest = sweeps.submit(
                settings.sweep, experiments, Config, executor=settings.executor,
                resources=resources, force=settings.force, overrides_for_all=settings.overrides,
            )
            print(f"sweep {settings.sweep}: manifest {manifest.path}", flush=True)
        else:
            manifest = sweeps.load_manifest(settings.sweep)
    return (manifest,)


@app.cell
def _():
    refresh = mo.ui.refresh(default_interval="5s", label="Status")
    refresh if mo.running_in_notebook() else None
    return (refresh,)


@app.cell
def _(manifest, refresh, settings):
    refresh.value  # reruns this cell on every tick
    mo.stop(manifest is None, mo.md(f"Sweep `{settings.sweep}` has not been submitted yet."))
    if settings.wait and not mo.running_in_notebook():
        status = sweeps.wait(manifest)
    else:
        status = sweeps.sweep_status(manifest)
    mo.ui.table(status, selection=None)
    return (status,)


@app.cell
def _(PAPER_ACCURACY, settings, status):
    status  # marimo reruns a cell when a name used in its body changes: here, every refresh
    runs = results.load_runs(Config, sweep=settings.sweep)
    mo.stop(runs.empty or "test_accuracy" not in runs, mo.md("No finished runs yet."))
    runs = runs[runs["status"] == "FINISHED"]
    table = results.summarize(runs, "model", "test_accuracy")
    table["paper"] = table["model"].map(PAPER_ACCURACY).astype(float)
    table = table.rename(columns={"mean": "test_accuracy_mean", "std": "test_accuracy_std", "count": "runs"})
    mo.ui.table(table.round(3), selection=None)
    return runs, table


@app.cell
def _(PAPER_ACCURACY, runs):
    _paper = pd.DataFrame({"model": list(PAPER_ACCURACY), "test_accuracy": list(PAPER_ACCURACY.values())})
    _paper_ticks = alt.Chart(_paper).mark_tick(color="firebrick", thickness=2, size=30).encode(
        x=alt.X("model:O", sort=list(PAPER_ACCURACY)), y="test_accuracy:Q", tooltip=["test_accuracy"],
    )
    accuracy_chart = (results.metric_chart(runs, "model", "test_accuracy") + _paper_ticks).properties(
        title="Test accuracy per model: runs, mean ± std, and the paper (red)", width=360
    )
    histories = results.load_histories(runs["run_id"])
    curves_chart = results.learning_curves_chart(histories, runs, "model", "test_accuracy").properties(width=360)
    mo.hstack([accuracy_chart, curves_chart])
    return accuracy_chart, curves_chart


@app.cell
def _():
    export_button = mo.ui.run_button(label="Export figures as SVG and PNG")
    export_button if mo.running_in_notebook() else None
    return (export_button,)


@app.cell
def _(accuracy_chart, curves_chart, export_button, settings):
    # On the button in the app (the status refresh would otherwise redo it every 5 s); always as a script.
    mo.stop(mo.running_in_notebook() and not export_button.value)
    _folder = sweeps.SWEEPS_DIR / settings.sweep / "figures"
    figures = results.save_chart(accuracy_chart, _folder / "test_accuracy") + results.save_chart(
        curves_chart, _folder / "learning_curves"
    )
    mo.hstack([mo.download(data=path.read_bytes(), filename=path.name, label=path.name) for path in figures])
    return (figures,)


@app.cell
def _(figures, table):
    if not mo.running_in_notebook():
        print(table.round(3).to_string(index=False))
        print("figures:", ", ".join(str(path) for path in figures), flush=True)
    return


if __name__ == "__main__":
    app.run()
