"""Checkpoints that let a Slurm job survive preemption and time limits in one MLflow run.

Under Slurm, `SlurmCheckpoint` saves the training state every N steps and when Slurm's
warning signal arrives (submitit requests SIGUSR2 some seconds before the time limit, and
preemption sends it too). After a save on that signal, the job requeues itself with
`scontrol requeue`. The requeued job keeps its job id, so it finds the checkpoint, reopens
the same MLflow run and resumes. Off Slurm every method is a no-op, so the training loop
needs no `if`.
"""

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

import torch

from lib import PROJECT_ROOT
from lib.jobs import WARNING_SIGNAL

log = logging.getLogger(__name__)

CHECKPOINT_DIR = PROJECT_ROOT / "checkpoints"


class Requeued(BaseException):
    """The job saved its state and asked Slurm to requeue it; the run stays open."""


class SlurmCheckpoint:
    def __init__(self, every, max_requeues, folder=CHECKPOINT_DIR):
        self.every = every
        self.max_requeues = max_requeues
        self.job_id = os.environ.get("SLURM_JOB_ID")
        self.requeues = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        self.path = Path(folder) / f"slurm-{self.job_id}.pt" if self.job_id else None
        self.signalled = False
        if self.job_id and threading.current_thread() is threading.main_thread():
            signal.signal(WARNING_SIGNAL, self._on_warning)

    def _on_warning(self, signum, frame):
        log.warning("received %s: saving a checkpoint at the next step", signal.Signals(signum).name)
        self.signalled = True

    def load(self):
        """Return the state saved by an earlier attempt of this job, or None."""
        if self.path is None or not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        log.warning("resuming run %s from step %d (requeue %d)", state["run_id"], state["step"], self.requeues)
        return state

    def due(self, step):
        """Return whether to save at `step`: after the warning signal, or every `every` steps under Slurm."""
        if self.path is None:
            return False
        return self.signalled or (self.every > 0 and step % self.every == 0)

    def save(self, state):
        """Write `state` (a dict with at least run_id and step) atomically."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.path)

    def requeue_if_signalled(self):
        """After a save on the warning signal, requeue this job and raise Requeued.

        Raises RuntimeError instead once the job has been requeued `max_requeues` times,
        so that the run ends FAILED with that reason.
        """
        if not self.signalled:
            return
        if self.requeues >= self.max_requeues:
            raise RuntimeError(
                f"Slurm's time limit or preemption stopped job {self.job_id} after "
                f"{self.requeues} requeues (max_requeues={self.max_requeues}); raise "
                "max_requeues or the job's time limit"
            )
        # Slurm sends SIGTERM after a requeue. The state is saved, so ignore it and exit.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.run(["scontrol", "requeue", self.job_id], check=True, timeout=60)
        raise Requeued(f"job {self.job_id} requeued after {self.requeues} earlier requeues")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        """Delete the checkpoint once the run has finished or failed for good.

        Kept after Requeued, SIGTERM (Terminated) or Ctrl-C, which Slurm may follow with a
        requeue that needs it.
        """
        if self.path is not None and (exc_type is None or issubclass(exc_type, Exception)):
            self.path.unlink(missing_ok=True)
