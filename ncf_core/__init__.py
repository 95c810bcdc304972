"""ncf_core: data, models, training and metrics for Neural Collaborative Filtering.

The library knows nothing of the benchmark harness (``bench``), Optuna or pytest.
"""

from ncf_core.config import ModelConfig, TrainConfig
from ncf_core.errors import DataError

__all__ = ["DataError", "ModelConfig", "TrainConfig"]
__version__ = "0.1.0"
