"""Small multi-layer perceptron for the 8x8 handwritten digits data set."""

import numpy as np
import torch
import torch.nn as nn


class MLP(nn.Module):
    """Two-layer perceptron mapping 64 pixel values to 10 class logits.

    The weights are initialised from a fixed seed, so every node starts from
    the same model.
    """

    def __init__(self, in_features: int = 64, hidden: int = 64, n_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of flattened images."""
        return self.net(x.reshape(x.shape[0], -1))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Return a copy of the parameters as numpy arrays, keyed by name."""
        return {name: tensor.detach().cpu().numpy().copy() for name, tensor in self.state_dict().items()}

    def set_weights(self, weights: dict) -> None:
        """Load parameters from a dict of arrays (read-only arrays are copied)."""
        state = {name: torch.tensor(np.array(w), dtype=self.state_dict()[name].dtype) for name, w in weights.items()}
        self.load_state_dict(state)
