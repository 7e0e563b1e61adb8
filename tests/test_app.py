"""The Streamlit app through streamlit.testing (no browser): pages run, widgets drive the phantom page."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT_S = 120  # the first run builds the default phantom; later runs hit st.cache_data


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, at.exception
    at.switch_page("views/phantom.py").run()
    assert not at.exception, at.exception
    return at


def _images(at: AppTest) -> list:
    return list(at.get("image"))


def test_app_opens_on_the_digital_human_with_a_default_phantom(app):
    assert app.title[0].value == "Digital human"
    assert any("not a real patient" in c.value for c in app.caption)
    assert len(_images(app)) == 3  # axial, coronal, sagittal
    assert not app.error


def test_self_check_compares_requested_and_measured(app):
    table = app.table[0].value
    assert {"requested", "measured"} <= set(table.columns)
    assert table.loc["Weight (kg)", "requested"] == 75.0
    assert abs(table.loc["Weight (kg)", "measured"] - 75.0) < 3.0  # the phantom calibrates its own mass


def test_build_button_builds_the_requested_phantom(app):
    app.radio(key="ph_sex").set_value("M")
    app.number_input(key="ph_height_cm").set_value(185.0)
    app.number_input(key="ph_weight_kg").set_value(90.0)
    app.radio(key="ph_pose").set_value("standing")
    app.run()
    assert any("press **Build phantom**" in c.value for c in app.caption)  # inputs differ from what is shown
    app.button(key="ph_build").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert len(_images(app)) == 3
    assert app.session_state["ph_request"]["attrs"]["sex"] == "M"
    assert app.session_state["ph_request"]["pose"] == "standing"
    assert not any("press **Build phantom**" in c.value for c in app.caption)


def test_viewer_controls_window_overlay_and_slices(app):
    app.radio(key="ph_window").set_value("bone").run()
    app.toggle(key="ph_overlay").set_value(False).run()
    assert not app.exception
    assert not any("Organ classes" in m.value for m in app.markdown)  # no legend without labels
    assert app.slider(key="ph_opacity").disabled
    app.toggle(key="ph_overlay").set_value(True).run()
    assert any("Organ classes" in m.value for m in app.markdown)
    axial = app.slider(key="ph_slice_axial")
    axial.set_value(axial.max).run()
    app.slider(key="ph_slice_coronal").set_value(0).run()
    assert not app.exception
    assert len(_images(app)) == 3


def test_rejected_attributes_show_an_error_not_a_traceback(app):
    app.number_input(key="ph_bfp_pct").set_value(60.0)
    app.number_input(key="ph_mmp_pct").set_value(60.0)  # fat + muscle = 120 % of the body mass
    app.button(key="ph_build").click().run()
    assert not app.exception, app.exception
    assert len(app.error) == 1
    assert "cannot be built" in app.error[0].value
    assert not _images(app)


def test_server_config_binds_localhost_with_xsrf_an_upload_limit_and_no_deploy_button():
    import tomllib

    from streamlit import config as st_config

    repo = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((repo / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["enableXsrfProtection"] is True
    assert 0 < cfg["server"]["maxUploadSize"] <= 2048
    assert cfg["client"]["toolbarMode"] == "viewer"
    # every key is one Streamlit knows (a misspelt key would be ignored silently)
    for section, values in cfg.items():
        for key in values:
            assert st_config._config_options_template.get(f"{section}.{key}") is not None, f"{section}.{key}"
