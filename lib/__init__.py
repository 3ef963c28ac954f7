"""Plumbing shared by the experiment notebooks: config and CLI, tracking, sweeps, results, data, models."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
