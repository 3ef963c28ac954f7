"""The submitit job of one experiment: run its command, holding a local slot while it runs.

Every job imports this module, so it imports only the standard library: importing
lib.sweeps (pandas, MLflow, torch) would cost each job about 3 s of CPU.
"""

import collections
import contextlib
import dataclasses
import fcntl
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lib import PROJECT_ROOT

ERROR_TAIL_LINES = 15
# submitit requests SIGUSR2 from Slurm before the time limit (SUBMITIT_PREEMPT_SIGNAL changes it).
WARNING_SIGNAL = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


@dataclasses.dataclass
class ExperimentCommand:
    """A submitit job: run one experiment's command, holding a local slot while it runs.

    A command rather than a pickled notebook cell, so that nothing from the notebook, such
    as marimo UI objects, has to be pickled. Its output goes to the job's log files.
    """

    command: list
    env: dict
    in_process: bool = False  # run the script in this interpreter, so breakpoints work
    slots_dir: str = ""  # folder of lock files; empty: no cap (Slurm caps arrays itself)
    slots: int = 0
    order: int = 0  # submission order; earlier jobs take a free slot first

    def __call__(self):
        if self.slots_dir:
            with LocalSlot(Path(self.slots_dir), self.slots, self.order):
                return self._run()
        return self._run()

    def _run(self):
        if self.in_process:
            return self._run_in_process()
        # Copy the script's stderr into the job's log line by line, keeping its tail for the
        # error, which submitit then prints last in the log, where the status table looks.
        process = subprocess.Popen(
            self.command, cwd=PROJECT_ROOT, env={**os.environ, **self.env},
            stderr=subprocess.PIPE, text=True, errors="replace",
        )
        tail = collections.deque(maxlen=ERROR_TAIL_LINES)
        with forward_warning_signal(process):
            for line in process.stderr:
                sys.stderr.write(line)
                tail.append(line.rstrip("\n"))
            status = process.wait()
        if status != 0:
            raise RuntimeError(
                f"{Path(self.command[1]).name} exited with status {status}; "
                "the end of its stderr:\n" + "\n".join(tail)
            )
        return status

    def _run_in_process(self):
        saved_argv, saved_env = sys.argv, dict(os.environ)
        sys.argv = self.command[1:]
        os.environ.update(self.env)
        try:
            runpy.run_path(self.command[1], run_name="__main__")
        finally:
            sys.argv = saved_argv
            os.environ.clear()
            os.environ.update(saved_env)
        return 0


@contextlib.contextmanager
def forward_warning_signal(process):
    """Pass Slurm's warning signal to the script, which checkpoints and requeues itself.

    It replaces submitit's own handler, which would requeue the job at once, before the
    script has saved anything. The script may get the signal twice (Slurm signals every
    process of the job step); it only sets a flag, so that is harmless.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(WARNING_SIGNAL, lambda signum, frame: process.send_signal(signum))
    try:
        yield
    finally:
        signal.signal(WARNING_SIGNAL, previous)


class LocalSlot:
    """Hold one of `slots` lock files while a job runs, so at most `slots` jobs run at once.

    Waiting jobs register a file named by their submission order. Only the earliest living
    waiter may take a free slot, so jobs start in submission order. A flock lock is released
    when its process dies, so a killed job frees its slot.
    """

    def __init__(self, folder, slots, order):
        self.folder, self.slots, self.order = folder, slots, order
        self.waiting = folder / "waiting" / f"{order:06d}.{os.getpid()}"
        self.handle = None

    def __enter__(self):
        self.waiting.parent.mkdir(parents=True, exist_ok=True)
        self.waiting.touch()
        try:
            while self.handle is None:
                if self._is_first_waiter():
                    self.handle = self._try_lock()
                if self.handle is None:
                    time.sleep(0.1)
        finally:
            self.waiting.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc_info):
        self.handle.close()  # releases the flock

    def _is_first_waiter(self):
        for path in sorted(self.waiting.parent.iterdir()):
            pid = int(path.suffix.lstrip("."))
            if path == self.waiting:
                return True
            if process_alive(pid):
                return False
            path.unlink(missing_ok=True)  # a waiter that died
        return True

    def _try_lock(self):
        for index in range(self.slots):
            handle = open(self.folder / f"slot{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                handle.close()
        return None


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
