import pytest
import torch

from lib.models import DEFAULT_WIDTH, build_model, count_parameters


@pytest.mark.parametrize("kind", list(DEFAULT_WIDTH))
def test_models_map_signals_to_logits(kind):
    logits = build_model(kind)(torch.randn(7, 40))
    assert logits.shape == (7, 10)


def test_paper_sizes():
    # Parameter counts of the paper's baselines at their default widths.
    assert count_parameters(build_model("logistic")) == 410
    assert count_parameters(build_model("mlp")) == 15210
    assert count_parameters(build_model("cnn")) == 5210


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="logistic, mlp, cnn, gru"):
        build_model("resnet")
