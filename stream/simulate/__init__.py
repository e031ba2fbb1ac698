"""A simulated ad world with known click probabilities.

`Simulator(config).run()` yields, day by day, the impression and click records
in delivery order and the truth (every impression's click probability) that
evaluation needs to compute the Bayes-optimal score.
"""

from stream.simulate.config import SimulationConfig
from stream.simulate.traffic import DayTraffic, Record, Simulator, Truth

__all__ = ["DayTraffic", "Record", "SimulationConfig", "Simulator", "Truth"]
