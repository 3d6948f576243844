"""Learning-curve plots and score tables: the statistics, and the two scripts on tiny real runs."""

import sys

import numpy as np
import pytest
from PIL import Image

from jax_mat import plotting

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "scripts"))
import compare  # noqa: E402
import plot_results  # noqa: E402

TINY = ["train.n_envs=4", "train.episode_length=8", "algo.ppo_epochs=1", "train.eval_episodes=2",
        "train.checkpoint_every=5", "algo.n_embd=16", "train.total_steps=96"]


def test_moving_average_and_mean_and_spread_over_unequal_curves():
    np.testing.assert_allclose(plotting.moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 1.0, 2.0]))
    b = (np.array([5.0, 15.0]), np.array([2.0, 4.0]))  # logged at other steps, and a shorter range
    steps, mean, std = plotting.mean_and_spread([a, b])
    np.testing.assert_array_equal(steps, [0.0, 5.0, 10.0, 15.0, 20.0])
    # At 0 and 20 only curve a is defined; at 10 a = 1 and b interpolates to 3.
    np.testing.assert_allclose(mean, [0.0, 1.25, 2.0, 2.75, 2.0])
    np.testing.assert_allclose(std[[0, 2, 4]], [0.0, 1.0, 0.0])


@pytest.mark.slow  # default-suite time on the 2-core CI machine; run by scripts/check_slow_tests.sh
def test_compare_trains_each_algorithm_and_plot_results_redraws_it(tmp_path, capfd):
    out = tmp_path / "cmp"
    argv = [*TINY, "--algos", "mappo", "happo", "--seeds", "2", "--out", str(out), "--smooth", "1", "--no-progress"]
    assert compare.main(argv) == 0
    for algo in ("mappo", "happo"):
        assert sorted(p.name for p in (out / algo / "tb").iterdir()) == ["aggregate", "seed_0", "seed_1"]
    with Image.open(out / "compare.png") as img:
        assert img.format == "PNG" and img.size[0] > 400
    table = (out / "scores.md").read_text()
    assert "| mappo | 2 |" in table and "| happo | 2 |" in table
    capfd.readouterr()
    assert compare.main(argv) == 0  # finished runs are not trained again
    out_text = capfd.readouterr().out
    assert "mappo: finished run" in out_text and "happo: finished run" in out_text, out_text

    png = tmp_path / "curves.png"
    assert plot_results.main([str(out / "mappo"), str(out / "happo"), "--tag", "loss/value", "--out", str(png),
                              "--table", str(tmp_path / "t.md")]) == 0
    with Image.open(png) as img:
        assert img.format == "PNG"
    assert "| mappo | 2 |" in (tmp_path / "t.md").read_text()
    assert plot_results.main([str(out / "happo"), "--tag", "no/such/tag", "--out", str(png)]) == 2
    assert "has no scalar 'no/such/tag'" in capfd.readouterr().err


def test_bad_input_to_the_scripts(tmp_path, capsys):
    assert compare.main(["--algos", "mat", "nosuch", "--out", str(tmp_path / "c")]) == 2
    assert "unknown algorithm 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert plot_results.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a jax_mat run directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no TensorBoard event files"):
        plotting.read_scalars(str(tmp_path))
