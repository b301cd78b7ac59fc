"""Small multi-layer perceptron for the 8x8 handwritten digits data set."""

import numpy as np
import torch
import torch.nn as nn


class MLP(nn.Module):
    """Perceptron with two hidden layers mapping 64 pixels to 10 class logits.

    The weights are initialised from a fixed seed, so every node starts from
    the same model. Dropout regularises the local training on small partitions.
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: tuple[int, ...] = (256, 128),
        n_classes: int = 10,
        dropout: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of flattened images."""
        return self.net(x.reshape(x.shape[0], -1))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Return a copy of the parameters as numpy arrays, keyed by name."""
        return {name: tensor.detach().cpu().numpy().copy() for name, tensor in self.state_dict().items()}

    def set_weights(self, weights: dict) -> None:
        """Load parameters from a dict of arrays (read-only arrays are copied)."""
        current = self.state_dict()
        state = {name: torch.tensor(np.array(w), dtype=current[name].dtype) for name, w in weights.items()}
        self.load_state_dict(state)
