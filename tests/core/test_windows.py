import numpy as np
import pytest

from ich_viewer.core import windows
from ich_viewer.core.windows import PRESETS, Window, apply_linear, apply_sigmoid, composite_rgb


def test_presets_have_the_documented_levels_and_widths():
    expected = {
        "brain": (40, 80), "subdural": (80, 200), "blood": (75, 215),
        "stroke": (40, 40), "soft tissue": (40, 400), "bone": (600, 2800),
    }
    assert {name: (w.center, w.width) for name, w in PRESETS.items()} == expected


def test_linear_window_maps_edges_to_0_and_1_and_clips():
    hu = np.array([-1000, 0, 40, 80, 3000], dtype=np.float32)
    out = apply_linear(hu, 40, 80)
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1])
    assert out.dtype == np.float32


def test_sigmoid_window_is_lee_2018_epsilon_at_the_edges():
    out = apply_sigmoid(np.array([0.0, 40.0, 80.0, -5000.0, 5000.0]), 40, 80)
    np.testing.assert_allclose(out[:3], [1 / 255, 0.5, 254 / 255], rtol=1e-5)
    assert out[3] == pytest.approx(0.0, abs=1e-6) and out[4] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.isfinite(out))


def test_sigmoid_is_monotonic_and_keeps_a_gradient_outside_the_window():
    hu = np.linspace(-40, 120, 321)  # float32 saturates far outside; this is 1 window width beyond
    out = apply_sigmoid(hu, 40, 80)
    assert np.all(np.diff(out) > 0)
    assert apply_sigmoid(np.array([90.0]), 40, 80)[0] < apply_sigmoid(np.array([100.0]), 40, 80)[0]


def test_composite_stacks_brain_subdural_bone():
    hu = np.array([[[60.0, 700.0]]])
    rgb = composite_rgb(hu)
    assert rgb.shape == (1, 1, 2, 3)
    np.testing.assert_allclose(rgb[0, 0, 0], [apply_linear(60, 40, 80), apply_linear(60, 80, 200), apply_linear(60, 600, 2800)])
    with pytest.raises(ValueError, match="exactly 3"):
        composite_rgb(hu, windows=[PRESETS["brain"]])


def test_invalid_width_and_unknown_names_give_clear_errors():
    with pytest.raises(ValueError, match="positive"):
        apply_linear(np.zeros(1), 40, 0)
    with pytest.raises(KeyError, match="presets are"):
        windows.preset("lung")
    assert str(Window("brain", 40, 80)) == "brain 40/80"
