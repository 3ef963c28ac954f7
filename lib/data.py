"""MNIST-1D, generated offline by the `mnist1d` package and cached as .npz."""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from lib import PROJECT_ROOT

log = logging.getLogger(__name__)

CACHE_DIR = PROJECT_ROOT / "data"

# The defaults of mnist1d.data.get_dataset_args() (mnist1d 0.0.2), copied so that a cache
# hit need not import the package (half a second) and a package update cannot silently
# change the data. tests/test_data.py checks that they still match.
DATASET_ARGS = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}


def load_mnist1d(device="cpu", cache_dir=CACHE_DIR):
    """Return {"x", "y", "x_test", "y_test"} as tensors on `device`.

    Uses the package's default arguments: 4000 train and 1000 test signals of length 40,
    10 classes. The first call generates the data (about a second) and caches it under
    `cache_dir`, keyed by a hash of those arguments. Later calls load the cache.
    """
    digest = hashlib.sha256(json.dumps(DATASET_ARGS, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"mnist1d_{digest}.npz"
    if not path.exists():
        _generate(DATASET_ARGS, path)
    with np.load(path) as arrays:
        return {
            "x": torch.as_tensor(arrays["x"], dtype=torch.float32, device=device),
            "y": torch.as_tensor(arrays["y"], dtype=torch.long, device=device),
            "x_test": torch.as_tensor(arrays["x_test"], dtype=torch.float32, device=device),
            "y_test": torch.as_tensor(arrays["y_test"], dtype=torch.long, device=device),
        }


def _generate(args, path):
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    log.info("generating MNIST-1D into %s", path)
    # make_dataset reseeds NumPy's and Python's global generators; that is harmless
    # here because training seeds its own generators afterwards.
    dataset = make_dataset(ObjectView(dict(args)))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so that concurrent sweep jobs never read a half-written file.
    partial = path.with_suffix(f".{np.random.randint(1 << 30)}.tmp.npz")
    np.savez(partial, **{k: dataset[k] for k in ("x", "y", "x_test", "y_test")})
    partial.replace(path)
