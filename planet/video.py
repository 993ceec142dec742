"""Frames to video files (imageio), and the dream panel layout (pure numpy).

imageio is imported inside the writers only, so `planet` still imports with just torch, numpy and
gymnasium (a bare GPU machine can train; the pipeline machine writes the videos).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from planet.fileio import atomic_path

CONTEXT_COLOUR = np.array([0, 200, 0], dtype=np.uint8)  # green: real frames fed to the posterior
DREAM_COLOUR = np.array([220, 0, 0], dtype=np.uint8)  # red: open-loop prior imagination


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """(N, S, S, 3) -> (N, S*f, S*f, 3), nearest neighbour, so small frames stay crisp on screen."""
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def with_border(frames: np.ndarray, colour: np.ndarray, width: int = 2) -> np.ndarray:
    """frames (T, H, W, 3) -> a copy with a `width`-pixel border of `colour` (3,) drawn inside each frame."""
    out = frames.copy()
    out[:, :width], out[:, -width:], out[:, :, :width], out[:, :, -width:] = colour, colour, colour, colour
    return out


def dream_panel(real: np.ndarray, imagined: np.ndarray, context: int, scale: int = 4) -> np.ndarray:
    """Real and imagined frames side by side, bordered green for context and red for dream steps.

    real, imagined (N, S, S, 3) uint8 -> (N, S*scale, 2*S*scale + 16, 3) uint8."""
    real, imagined = upscale(real, scale), upscale(imagined, scale)
    colours = np.where(np.arange(len(real))[:, None] < context, CONTEXT_COLOUR, DREAM_COLOUR)  # (N, 3)
    panels = []
    for i in range(len(real)):
        pair = [with_border(frames[i : i + 1], colours[i], width=scale)[0] for frames in (real, imagined)]
        gap = np.full((pair[0].shape[0], 16, 3), 255, dtype=np.uint8)  # keeps widths multiples of 16
        panels.append(np.concatenate([pair[0], gap, pair[1]], axis=1))
    return np.stack(panels)


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 mp4 (yuv420p, so browsers and the MLflow UI play it); sides padded to multiples of 16."""
    import imageio.v2 as imageio

    with atomic_path(path) as tmp, imageio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=16,
            output_params=["-loglevel", "error"]) as writer:
        for frame in frames:
            writer.append_data(frame)


def write_gif(path: Path, frames: np.ndarray, fps: int, max_side: int = 256) -> None:
    """A small looping gif for in-browser previews (DVC and MLflow render gifs, not mp4)."""
    import imageio.v2 as imageio

    step = max(1, int(np.ceil(frames.shape[1] / max_side)))
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, list(frames[:, ::step, ::step]), format="GIF", duration=1000 / fps, loop=0)
