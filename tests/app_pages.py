"""Open one page of the real app through streamlit.testing (shared by the page tests)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_page(path: str, timeout_s: float = 180) -> AppTest:
    """Run the app, switch to ``path`` (e.g. "views/generate.py") and check it raised nothing."""
    at = AppTest.from_file(APP, default_timeout=timeout_s)
    at.run()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at
