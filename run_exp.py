import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")

with app.setup:
    import math
    import re
    import time
    from dataclasses import dataclass
    from typing import Literal, Optional

    import altair as alt
    import marimo as mo
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from lib import tracking
    from lib.checkpoint import SlurmCheckpoint
    from lib.config import config_form, config_from_cli, config_from_form
    from lib.data import load_mnist1d
    from lib.models import build_model, count_parameters, pick_device


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # MNIST-1D baselines

    Trains one of the four baselines of the MNIST-1D paper
    ([Greydanus and Kobak, 2020](https://arxiv.org/abs/2011.14439)) and logs the run to
    MLflow. Test accuracy in the paper: logistic 32%, MLP 68%, CNN 94%, GRU 91%.

    - `python run_exp.py -- model=mlp lr=1e-2` runs it as a script with overrides;
      `python run_exp.py --help` lists every field.
    - `marimo edit run_exp.py` opens it as this notebook; the form below reruns training.
    - `mlflow ui` in the project root browses the runs.
    """)
    return


@app.class_definition
@dataclass
class Config:
    model: Literal["logistic", "mlp", "cnn", "gru"] = "cnn"  # the paper's four baselines
    width: Optional[int] = None  # hidden units (mlp, gru) or channels (cnn); null: the paper's size
    lr: float = 1e-2  # Adam learning rate
    weight_decay: float = 0.0  # Adam weight decay (L2 penalty)
    batch_size: int = 100  # signals per step, sampled with replacement
    steps: int = 6000  # optimizer steps; 6000 at batch 100 is 150 epochs
    eval_every: int = 250  # steps between test-set evaluations and log lines
    seed: int = 0  # seeds the weights and the batch order
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    threads: int = 1  # torch CPU threads; these small models train fastest on one
    run_name: str = ""  # MLflow run name; empty: a timestamp
    experiment_name: str = "mnist1d"  # MLflow experiment
    sweep: str = ""  # name of the sweep that launched this run; empty for ad-hoc runs
    checkpoint_every: int = 1000  # Slurm only: steps between checkpoints; 0: on the warning signal only
    max_requeues: int = 3  # Slurm only: requeues after preemption or time limit before the run fails

    def __post_init__(self):
        for name in ("steps", "eval_every", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("weight_decay", "checkpoint_every", "max_requeues"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.width is not None and self.width < 1:
            raise ValueError(f"width must be at least 1, or null for the paper's size, got {self.width}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if not self.experiment_name:
            raise ValueError("experiment_name must not be empty")


@app.function
def evaluate(model, x, y):
    """Return (mean cross-entropy, accuracy) of `model` on a whole split."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    model.train()
    return loss, accuracy


@app.cell
def _():
    # Bad overrides exit with status 2 here, before any data is loaded or run created.
    cli_config = config_from_cli(Config)
    form = config_form(cli_config)
    form
    return cli_config, form


@app.cell
def _(cli_config, form):
    # The command-line config runs first; each submit of the form runs again as a new run.
    config = config_from_form(Config, form.value) if form.value else cli_config
    device = pick_device(config.device)
    torch.set_num_threads(config.threads)
    data = load_mnist1d(device)
    print(
        f"{config.model} on {device} ({torch.get_num_threads()} threads): "
        f"{len(data['y'])} train / {len(data['y_test'])} test signals",
        flush=True,
    )
    return config, data, device


@app.cell
def _(config, data, device):
    torch.manual_seed(config.seed)
    batch_generator = torch.Generator(device="cpu").manual_seed(config.seed)
    model = build_model(config.model, config.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    print(f"{count_parameters(model):,} parameters, {config.steps} steps", flush=True)

    history = []  # one row per evaluation, for the learning curves
    first_step, earlier_seconds = 1, 0.0

    # Under Slurm, resume from the checkpoint of an earlier attempt of this job, if any.
    checkpoint = SlurmCheckpoint(config.checkpoint_every, config.max_requeues)
    state = checkpoint.load()
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        batch_generator.set_state(state["batch_generator"])
        history, first_step, earlier_seconds = state["history"], state["step"] + 1, state["train_seconds"]

    resume_run_id = state["run_id"] if state else None
    with tracking.start_run(config, source=__file__, resume_run_id=resume_run_id) as run, checkpoint:
        start = time.perf_counter() - earlier_seconds
        train_losses = []
        with mo.status.progress_bar(total=config.steps, title="Training") as progress:
            for step in range(first_step, config.steps + 1):
                # Take a step on a random batch.
                batch = torch.randint(len(data["y"]), (config.batch_size,), generator=batch_generator)
                batch = batch.to(device)
                loss = F.cross_entropy(model(data["x"][batch]), data["y"][batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                train_losses.append(loss.item())
                run.log_metrics({"train_loss": train_losses[-1]}, step=step)
                progress.update()

                # Evaluate on the test set, log, and print one line.
                if step % config.eval_every == 0 or step == config.steps:
                    test_loss, test_accuracy = evaluate(model, data["x_test"], data["y_test"])
                    run.log_metrics({"test_loss": test_loss, "test_accuracy": test_accuracy}, step=step)
                    run.flush()
                    elapsed = time.perf_counter() - start
                    eta = elapsed / step * (config.steps - step)
                    mean_train_loss = sum(train_losses) / len(train_losses)
                    train_losses = []
                    if not math.isfinite(mean_train_loss):
                        raise FloatingPointError(
                            f"train loss is {mean_train_loss} at step {step}: training diverged; "
                            f"try a lower lr (now {config.lr})"
                        )
                    history.append(
                        {"step": step, "train_loss": mean_train_loss, "test_loss": test_loss,
                         "test_accuracy": test_accuracy}
                    )
                    print(
                        f"step {step:>{len(str(config.steps))}}/{config.steps} | "
                        f"train_loss {mean_train_loss:.4f} | test_loss {test_loss:.4f} | "
                        f"test_accuracy {test_accuracy:.4f} | elapsed {elapsed:.1f}s | eta {eta:.1f}s",
                        flush=True,
                    )

                # Save a checkpoint (Slurm only), also at the first step so that a requeue always
                # finds this run. After Slurm's warning signal, requeue and exit.
                if checkpoint.due(step) or step == first_step:
                    run.flush()
                    checkpoint.save({
                        "run_id": run.run_id, "step": step, "history": history,
                        "train_seconds": time.perf_counter() - start, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "batch_generator": batch_generator.get_state(),
                    })
                    checkpoint.requeue_if_signalled()

        train_seconds = time.perf_counter() - start
        best_accuracy = max(row["test_accuracy"] for row in history)
        run.log_metrics(
            {"train_seconds": train_seconds, "best_test_accuracy": best_accuracy}, step=config.steps
        )

    print(
        f"done: test_accuracy {history[-1]['test_accuracy']:.4f} "
        f"(best {best_accuracy:.4f}) in {train_seconds:.1f}s\n"
        f"MLflow run {run.run_id} FINISHED; browse it: {tracking.browse_hint(run)}",
        flush=True,
    )
    return (history,)


@app.cell
def _(history):
    _curves = pd.DataFrame(history).melt("step", var_name="metric", value_name="value")
    alt.Chart(_curves).mark_line(point=True).encode(
        x="step:Q",
        y=alt.Y("value:Q", title=None),
        color="metric:N",
        tooltip=["step", "metric", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=480, height=160).facet(
        row=alt.Row("metric:N", title=None),
    ).resolve_scale(y="independent").properties(title="Learning curves")
    return


if __name__ == "__main__":
    app.run()
