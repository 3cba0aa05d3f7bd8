"""Look inside a model: what each convolution layer makes of a digit, and which pixels drove its answer.

Feature maps are each convolution's output after the normalisation and activation that follow it
(what a Keras user sees of a ``Conv2D(..., activation=...)`` layer). Attributions are Captum's
integrated gradients from a black image (MNIST's paper) to the digit, for the class the model chose:
a pixel's share of the difference between the two logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# modules that shape a convolution's output before the next layer sees it
_FOLLOWERS = (nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.PReLU, nn.ReLU6)
# Integration steps. The attributions of a digit should add up to its logit gap (completeness); on 32 MNIST test
# digits with the bundled model they miss it by a median of 2.0 % (max 14 %) with 64 steps, 1.2 % (max 5 %) with 128.
IG_STEPS = 128
IG_BATCH = 512  # images through the model at once while integrating: memory stays bounded for many digits


@dataclass
class Explanation:
    """One digit through a model: its reading, each convolution layer's maps, and each pixel's attribution."""

    digit: np.ndarray  # the 28x28 uint8 image the model saw
    probabilities: np.ndarray  # (10,)
    layers: list[tuple[str, np.ndarray]]  # (layer name, maps (C, H, W)) in forward order
    attribution: np.ndarray  # (28, 28), in logit units; sums to about logit(image) - logit(black)

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())


def explain_digits(model: nn.Module, digits: np.ndarray, temperature: float = 1.0) -> list[Explanation]:
    """Feature maps and integrated-gradients attributions for uint8 ``(N, 28, 28)`` digits in MNIST's format."""
    from captum.attr import IntegratedGradients

    model = model.eval().float()
    x = torch.as_tensor(np.asarray(digits, dtype=np.uint8)).unsqueeze(1).float().div(255)
    outputs: list[tuple[str, nn.Module, torch.Tensor]] = []
    names = {module: name for name, module in model.named_modules()}
    hooks = [module.register_forward_hook(lambda module, args, out: outputs.append((names[module], module, out.detach())))
             for module in model.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    probabilities = torch.softmax(logits / temperature, dim=1).numpy()
    layers = _convolution_outputs(outputs)
    predicted = logits.argmax(1)
    attributions = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=predicted, n_steps=IG_STEPS,
                                                        internal_batch_size=IG_BATCH)
    return [Explanation(np.asarray(digits[i], np.uint8), probabilities[i], [(name, maps[i].numpy()) for name, maps in layers],
                        attributions[i, 0].detach().numpy()) for i in range(len(x))]


def _convolution_outputs(outputs: list[tuple[str, nn.Module, torch.Tensor]]) -> list[tuple[str, torch.Tensor]]:
    """Each convolution's output, taken after the normalisation and activation right behind it in forward order."""
    layers = []
    for index, (name, module, output) in enumerate(outputs):
        if not isinstance(module, nn.Conv2d):
            continue
        shown = output
        for _, follower, later in outputs[index + 1 :]:
            if not isinstance(follower, _FOLLOWERS) or later.shape != output.shape:
                break
            shown = later
        layers.append((name, shown))
    return layers
