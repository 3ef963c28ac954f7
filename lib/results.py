"""Runs and metric histories from MLflow as pandas DataFrames, and Altair figures of them."""

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import altair as alt
import pandas as pd

from lib import tracking
from lib.config import base_type, field_choices, field_types

SQLITE_MAX_VARIABLES = 900  # below SQLite's oldest limit of 999 bound parameters per query


def load_runs(config_cls, experiment_name=None, sweep=None, tracking_uri=None):
    """Return one row per run: config fields cast to their Config types, latest metrics,
    status, run id and name, start and end times.

    MLflow stores params as strings; here `lr` comes back as float, `steps` as Int64 (None
    as <NA>), booleans as boolean and Literal fields as ordered categoricals, so they sort
    and plot as their values.
    """
    client = tracking.MlflowClient(tracking_uri or tracking.tracking_uri())
    name = experiment_name or config_cls().experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return pd.DataFrame()
    query = f"tags.sweep = '{sweep}'" if sweep else ""
    runs = client.search_runs([experiment.experiment_id], filter_string=query, max_results=50000)
    rows = [
        {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
            "end_time": pd.to_datetime(run.info.end_time, unit="ms") if run.info.end_time else pd.NaT,
            **{f"params.{k}": v for k, v in run.data.params.items()},
            **run.data.metrics,
        }
        for run in runs
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for key, field_type in field_types(config_cls).items():
        column = f"params.{key}"
        if column in frame:
            frame[key] = cast_param(frame.pop(column), field_type)
    return frame


def cast_param(strings, field_type):
    """Cast a column of MLflow param strings back to the Config field's type."""
    strings = strings.where(strings != "None")  # MLflow stores None as the text "None"
    base = base_type(field_type)
    choices = field_choices(field_type)
    if choices and base is str:
        return pd.Categorical(strings, categories=choices, ordered=True)
    if base is bool:
        return strings.map({"True": True, "False": False}).astype("boolean")
    if base is int:
        return pd.to_numeric(strings).astype("Int64")
    if base is float:
        return pd.to_numeric(strings).astype("float64")
    return strings


def load_histories(run_ids, metrics=("train_loss", "test_loss", "test_accuracy"), tracking_uri=None):
    """Return the metric histories of many runs in long format: run_id, metric, step, value.

    On a SQLite store this is one read-only SQL query per chunk of runs: 1000 runs x 3 metrics
    x 100 steps took 0.5 s in bench/load_histories.py. Other stores get parallel
    get_metric_history calls.
    """
    uri = tracking_uri or tracking.tracking_uri()
    run_ids, metrics = list(run_ids), list(metrics)
    if uri.startswith("sqlite:///"):
        frame = _histories_from_sqlite(Path(uri.removeprefix("sqlite:///")), run_ids, metrics)
    else:
        frame = _histories_from_client(tracking.MlflowClient(uri), run_ids, metrics)
    return frame.sort_values(["run_id", "metric", "step"], ignore_index=True)


def _histories_from_sqlite(path, run_ids, metrics):
    # NOTE: reads MLflow's `metrics` table directly. Its columns (run_uuid, key, step, value)
    # have been stable since MLflow 1.x; tests/test_results.py compares against
    # get_metric_history so that a schema change fails loudly.
    chunk = SQLITE_MAX_VARIABLES - len(metrics)
    frames = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        for start in range(0, len(run_ids), chunk):
            ids = run_ids[start : start + chunk]
            query = (
                "SELECT run_uuid AS run_id, key AS metric, step, value FROM metrics "
                f"WHERE run_uuid IN ({','.join('?' * len(ids))}) "
                f"AND key IN ({','.join('?' * len(metrics))})"
            )
            frames.append(pd.read_sql_query(query, connection, params=[*ids, *metrics]))
    return pd.concat(frames, ignore_index=True) if frames else _empty_history()


def _histories_from_client(client, run_ids, metrics):
    def fetch(pair):
        run_id, metric = pair
        return [(run_id, metric, m.step, m.value) for m in client.get_metric_history(run_id, metric)]

    pairs = [(run_id, metric) for run_id in run_ids for metric in metrics]
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = [row for rows in pool.map(fetch, pairs) for row in rows]
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])


def _empty_history():
    return pd.DataFrame(
        {"run_id": pd.Series(dtype=str), "metric": pd.Series(dtype=str),
         "step": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64")}
    )


def summarize(runs, by, metric):
    """Return mean, std and count of `metric` per value of the `by` columns."""
    grouped = runs.groupby(by, observed=True)[metric]
    return grouped.agg(["mean", "std", "count"]).reset_index()


def metric_chart(runs, x, metric, color=None):
    """Plot the final `metric` against parameter `x`: one dot per run, the mean, and a ± std bar."""
    x_type = "ordinal" if isinstance(runs[x].dtype, pd.CategoricalDtype) else "quantitative"
    encode_x = alt.X(x, type=x_type, sort=list(runs[x].cat.categories) if x_type == "ordinal" else None)
    colors = {"color": alt.Color(color, type="nominal")} if color else {}
    base = alt.Chart(runs).encode(x=encode_x, **colors)
    seeds = base.mark_point(opacity=0.4, size=30).encode(y=alt.Y(metric, type="quantitative"))
    error = base.mark_errorbar(extent="stdev", ticks=True).encode(y=alt.Y(metric, type="quantitative"))
    mean = base.mark_point(filled=True, size=90).encode(y=alt.Y(metric, aggregate="mean", type="quantitative"))
    return (seeds + error + mean).properties(title=f"{metric} (mean ± std over runs)")


def learning_curves_chart(histories, runs, by, metric):
    """Plot the mean of `metric` over runs per step, one line per value of `by`, with a ± std band."""
    data = histories[histories["metric"] == metric].merge(runs[["run_id", by]], on="run_id")
    data[by] = data[by].astype(str)
    base = alt.Chart(data).encode(x=alt.X("step:Q"), color=alt.Color(f"{by}:N"))
    band = base.mark_errorband(extent="stdev").encode(y=alt.Y("value:Q", title=metric))
    line = base.mark_line().encode(y=alt.Y("value:Q", aggregate="mean", title=metric))
    return (band + line).properties(title=f"{metric} by {by}")


def save_chart(chart, stem):
    """Write `chart` as stem.svg and stem.png (for a paper) with vl-convert; return both paths."""
    paths = [Path(f"{stem}.svg"), Path(f"{stem}.png")]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        chart.save(path, **({"scale_factor": 2} if path.suffix == ".png" else {}))
    return paths
