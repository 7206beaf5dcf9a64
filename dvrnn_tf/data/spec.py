"""What the rest of the package knows of a data source's sequences: `DataSpec` and `Factor`."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Factor:
    """One named label of the sequences (a factor of variation the data set records).

    num_classes: classes of a categorical label (values 0..num_classes-1), or None for a
      continuous one (e.g. a position; probed by linear regression, not classification).
    per_frame: one value per time step ([N, T, ...]) rather than per sequence ([N, ...]).
    shape: trailing shape of one value (() for a class; (2,) for an x, y position).
    """

    name: str
    num_classes: int | None = None
    per_frame: bool = False
    shape: tuple = ()

    @property
    def categorical(self) -> bool:
        return self.num_classes is not None

    @property
    def kind(self) -> str:
        """"static" or "per_frame", and "class" or "continuous": e.g. "static class"."""
        return (f"{'per_frame' if self.per_frame else 'static'} "
                f"{'class' if self.categorical else 'continuous'}")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Frames [H, W, C], T and the factor labels of a source: what a model is built for."""

    image_shape: tuple
    seq_len: int
    factors: tuple = ()

    def factor(self, name: str) -> Factor | None:
        """The factor called `name`, or None."""
        return next((f for f in self.factors if f.name == name), None)

    @property
    def factor_names(self) -> tuple:
        return tuple(f.name for f in self.factors)
