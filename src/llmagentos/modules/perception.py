"""Perception: data collector -> preprocessor -> feature extractor (seed, section 3.2)."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from llmagentos.exceptions import ConfigError
from llmagentos.modules.base import Component, Module, only_components, run_sync
from llmagentos.types import Features, Observation

__all__ = [
    "BinningExtractor",
    "DataCollector",
    "DiscreteExtractor",
    "FeatureExtractor",
    "IdentityCollector",
    "IdentityExtractor",
    "IdentityPreprocessor",
    "PerceptionModule",
    "Preprocessor",
]


@runtime_checkable
class DataCollector(Protocol):
    """Gathers the raw data for one observation (from the observation itself or elsewhere)."""

    def collect(self, observation: Observation) -> Any: ...


@runtime_checkable
class Preprocessor(Protocol):
    """Cleans and converts collected data."""

    def preprocess(self, data: Any) -> Any: ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """Turns preprocessed data into the features the planner works on."""

    def extract(self, data: Any) -> Features: ...


class IdentityCollector(Component):
    """Collects the observation as it is."""

    def collect(self, observation: Observation) -> Any:
        return observation


class IdentityPreprocessor(Component):
    """Leaves the data unchanged."""

    def preprocess(self, data: Any) -> Any:
        return data


class IdentityExtractor(Component):
    """Uses the data itself as the features."""

    def extract(self, data: Any) -> Features:
        return data


class DiscreteExtractor(Component):
    """Maps a discrete observation (NumPy or Python integer) to a plain ``int`` state.

    Raises:
        ValueError: the observation is not an integer (``int()`` would have cut 3.5 to
            3, and taken ``True`` and ``"7"``, as states they are not).
    """

    def extract(self, data: Any) -> Features:
        if type(data) is int:
            return data
        if isinstance(data, bool) or not hasattr(type(data), "__index__"):
            raise ValueError(f"a discrete observation is an integer, not {data!r:.40}")
        return operator.index(data)


class BinningExtractor(Component):
    """Discretizes a continuous vector into one integer state index.

    Each dimension ``i`` is cut into ``bins[i]`` equal-width bins over
    ``[low[i], high[i]]`` (values outside are clipped); the per-dimension bin indices
    are combined in row-major order, so states range over ``0 .. prod(bins) - 1``.

    Args:
        low: lower bound per dimension.
        high: upper bound per dimension.
        bins: number of bins per dimension (one int applies to every dimension).
    """

    def __init__(
        self, *, low: Sequence[float], high: Sequence[float], bins: int | Sequence[int] = 10
    ) -> None:
        if len(low) != len(high):
            raise ConfigError("high", f"has {len(high)} dimensions but low has {len(low)}")
        self.low = [float(x) for x in low]
        self.high = [float(x) for x in high]
        self.bins = [int(bins)] * len(self.low) if isinstance(bins, int) else [int(b) for b in bins]
        if len(self.bins) != len(self.low):
            problem = f"has {len(self.bins)} entries for {len(self.low)} dimensions"
            raise ConfigError("bins", problem)
        for i, (lo, hi, n) in enumerate(zip(self.low, self.high, self.bins, strict=True)):
            if not hi > lo:
                raise ConfigError(f"high[{i}]", f"must be greater than low ({hi} <= {lo})")
            if n < 1:
                raise ConfigError(f"bins[{i}]", f"must be at least 1 (got {n})")

    @property
    def n_states(self) -> int:
        total = 1
        for n in self.bins:
            total *= n
        return total

    def extract(self, data: Any) -> Features:
        values = list(data.tolist() if hasattr(data, "tolist") else data)
        if len(values) != len(self.bins):
            raise ValueError(f"expected {len(self.bins)} values, got {len(values)}")
        index = 0
        for value, lo, hi, n in zip(values, self.low, self.high, self.bins, strict=True):
            position = int((float(value) - lo) / (hi - lo) * n)
            index = index * n + min(max(position, 0), n - 1)
        return index


class PerceptionModule(Module):
    """Turns observations into features.

    Override :meth:`perceive` (the seed's method) or its async twin :meth:`aperceive`;
    otherwise the module runs its components: ``collector.collect`` ->
    ``preprocessor.preprocess`` -> ``extractor.extract``.

    Args:
        collector: the data collector (default: the observation as it is).
        preprocessor: the preprocessor (default: unchanged).
        extractor: the feature extractor (default: identity).
    """

    kind = "perception"
    _twin_names = ("perceive", "aperceive")

    depends_on_learning: bool = False
    """Whether what the learner learns can change the features of an observation (a
    perception that recalls from a memory the learner writes). The agent then perceives
    each observation for its next action after the learner has learned from the step,
    instead of reusing the features it perceived for the step's transition."""

    collector: DataCollector = IdentityCollector()
    preprocessor: Preprocessor = IdentityPreprocessor()
    extractor: FeatureExtractor = IdentityExtractor()

    def __init__(
        self,
        *,
        collector: DataCollector | None = None,
        preprocessor: Preprocessor | None = None,
        extractor: FeatureExtractor | None = None,
    ) -> None:
        if collector is not None:
            self.collector = collector
        if preprocessor is not None:
            self.preprocessor = preprocessor
        if extractor is not None:
            self.extractor = extractor

    def components(self) -> Iterable[Component]:
        return only_components(self.collector, self.preprocessor, self.extractor)

    def perceive(self, observation: Observation) -> Features:
        """Return the features of ``observation`` (the seed's method)."""
        if "aperceive" in self._overrides:
            return run_sync(self.aperceive(observation))
        return self._run_components(observation)

    async def aperceive(self, observation: Observation) -> Features:
        """Async twin of :meth:`perceive`."""
        if "perceive" in self._overrides:
            return self.perceive(observation)
        return self._run_components(observation)

    def _run_components(self, observation: Observation) -> Features:
        return self.extractor.extract(
            self.preprocessor.preprocess(self.collector.collect(observation))
        )


PerceptionModule._kind_base = PerceptionModule
