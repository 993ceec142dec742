import imageio.v3 as iio
import numpy as np

from planet.video import CONTEXT_COLOUR, DREAM_COLOUR, dream_panel, write_gif, write_mp4


def test_dream_panel_layout_and_colours():
    real = np.zeros((6, 16, 16, 3), np.uint8)
    imagined = np.full((6, 16, 16, 3), 100, np.uint8)
    panel = dream_panel(real, imagined, context=2, scale=4)
    assert panel.shape == (6, 64, 64 + 16 + 64, 3) and panel.shape[2] % 16 == 0
    assert np.array_equal(panel[0, 0, 0], CONTEXT_COLOUR) and np.array_equal(panel[1, 0, -1], CONTEXT_COLOUR)
    assert np.array_equal(panel[2, 0, 0], DREAM_COLOUR) and np.array_equal(panel[5, -1, -1], DREAM_COLOUR)
    assert panel[3, 32, 32].tolist() == [0, 0, 0] and panel[3, 32, 64 + 16 + 32].tolist() == [100, 100, 100]


def test_videos_round_trip_and_leave_no_temp_files(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (9, 64, 96, 3), dtype=np.uint8)
    write_mp4(tmp_path / "a.mp4", frames, fps=10)
    write_gif(tmp_path / "a.gif", frames, fps=10)
    assert len(list(iio.imiter(tmp_path / "a.mp4"))) == 9
    assert iio.imread(tmp_path / "a.gif", index=None).shape[:3] == (9, 64, 96)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.mp4"]
