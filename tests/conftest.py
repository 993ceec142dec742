import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_env import register  # noqa: E402

from planet.config import ModelConfig  # noqa: E402

register()
# Two threads, as on CI, unless OMP_NUM_THREADS says otherwise: `make mutation` sets 1, because its
# workers are forked from a process that has run the tests, and a forked OpenMP pool hangs.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))

# `make mutation`: mutmut 3.8 reads pytest's private Item._nodeid, which pytest 9.2 no longer has.
if not hasattr(pytest.Item, "_nodeid"):
    pytest.Item._nodeid = property(lambda item: item.nodeid)


@pytest.fixture
def tiny_model_cfg() -> ModelConfig:
    """Small enough that a test trains it in seconds on a CPU."""
    return ModelConfig(belief_size=16, state_size=4, embed_size=32, hidden_size=16, reward_hidden_size=16,
                       cnn_depth=4)


# The engine's tests that take a device run on the CPU everywhere and on CUDA where there is one
# (`make gpu-check` runs them there).
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)
