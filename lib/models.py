"""The four baselines of the MNIST-1D paper (Greydanus and Kobak, 2020, arXiv:2011.14439).

Each takes a batch of signals shaped [batch, 40] and returns logits shaped [batch, 10].
"""

import torch
from torch import nn

SIGNAL_LENGTH = 40
NUM_CLASSES = 10
DEFAULT_WIDTH = {"logistic": 0, "mlp": 100, "cnn": 25, "gru": 6}  # the paper's sizes


class MLP(nn.Module):
    """Two hidden ReLU layers; the second has a residual connection."""

    def __init__(self, width):
        super().__init__()
        self.layer1 = nn.Linear(SIGNAL_LENGTH, width)
        self.layer2 = nn.Linear(width, width)
        self.head = nn.Linear(width, NUM_CLASSES)

    def forward(self, x):
        h = self.layer1(x).relu()
        h = h + self.layer2(h).relu()
        return self.head(h)


class CNN(nn.Module):
    """Three strided 1D convolutions (length 40 -> 19 -> 10 -> 5), then a linear head."""

    def __init__(self, width):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, width, kernel_size=5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(width * 5, NUM_CLASSES)

    def forward(self, x):
        h = self.features(x.unsqueeze(1))  # [batch, 1, 40] -> [batch, width, 5]
        return self.head(h.flatten(1))


class GRU(nn.Module):
    """A bidirectional GRU over the 40 time steps; all its outputs feed a linear head."""

    def __init__(self, width):
        super().__init__()
        self.gru = nn.GRU(input_size=1, hidden_size=width, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * width * SIGNAL_LENGTH, NUM_CLASSES)

    def forward(self, x):
        outputs, _ = self.gru(x.unsqueeze(-1))  # [batch, 40, 1] -> [batch, 40, 2 * width]
        return self.head(outputs.flatten(1))


def build_model(kind, width=None):
    """Return a fresh model of `kind`; `width` None takes the paper's size."""
    if kind not in DEFAULT_WIDTH:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(DEFAULT_WIDTH)}")
    width = DEFAULT_WIDTH[kind] if width is None else width
    if kind == "logistic":
        return nn.Linear(SIGNAL_LENGTH, NUM_CLASSES)
    if width < 1:
        raise ValueError(f"width must be at least 1 for model {kind!r}, got {width}")
    return {"mlp": MLP, "cnn": CNN, "gru": GRU}[kind](width)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def pick_device(name):
    """Return a torch.device; "auto" takes CUDA when present, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"invalid device {name!r}: use auto, cpu, cuda or cuda:N") from error
