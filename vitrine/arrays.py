"""Type aliases for numpy arrays at Vitrine's boundaries (dtype and shape are in the docstrings)."""

from typing import Any

import numpy.typing as npt

Array = npt.NDArray[Any]

# A normalisation constant: one for every channel, or one per RGB channel.
ChannelScale = float | tuple[float, float, float]
