"""PlaNet (Hafner et al. 2019): a world model learned from pixels, and planning in its latent space.

    planet.train("params.yaml", "runs/pendulum")        # train; run again to resume or extend the run
    model, cfg = planet.load_model("models/model.pt")   # the WorldModel and the config it was trained with
    agent = planet.load_agent("models/model.pt")        # reset(), act(frame) -> action in env units
"""
from planet.checkpoint import ENGINE_VERSION as __version__
from planet.run import train
from planet.trained import load_agent, load_model

__all__ = ["__version__", "load_agent", "load_model", "train"]
