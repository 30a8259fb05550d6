"""Type aliases for numpy arrays at Vitrine's boundaries (dtype and shape are in the docstrings), and one
helper they share."""

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# A normalisation constant: one for every channel, or one per RGB channel.
ChannelScale = float | tuple[float, float, float]


def spans(first: Array, counts: Array) -> Array:
    """The indices first[i], ..., first[i] + counts[i] - 1 of every span, in order, as one array (a
    product's photos, or its facet entries), without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    out: Array = np.repeat(np.asarray(first, dtype=np.int64) - np.cumsum(counts) + counts, counts) \
        + np.arange(int(counts.sum()))
    return out
