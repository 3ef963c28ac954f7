import torch
from mnist1d.data import get_dataset_args

from lib.data import DATASET_ARGS, load_mnist1d


def test_args_match_package_defaults():
    defaults = get_dataset_args(as_dict=True)
    defaults.pop("url")
    assert DATASET_ARGS == defaults


def test_generates_then_loads_cache(tmp_path):
    first = load_mnist1d(cache_dir=tmp_path)
    assert len(list(tmp_path.glob("mnist1d_*.npz"))) == 1
    second = load_mnist1d(cache_dir=tmp_path)

    assert first["x"].shape == (4000, 40)
    assert first["x_test"].shape == (1000, 40)
    assert first["x"].dtype == torch.float32
    assert set(first["y"].unique().tolist()) == set(range(10))
    for key in ("x", "y", "x_test", "y_test"):
        assert torch.equal(first[key], second[key])
