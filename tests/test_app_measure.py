"""The "Measure a CT" page: uploads of a NIfTI file, a DICOM series (files, zip, folder) and an MR image,
driven through streamlit.testing as a user would."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.app_pages import open_page
from tests.dicom_fixtures import FILES

DATA = Path(__file__).parent / "data"
PAGE = "views/measure.py"


@pytest.fixture()
def page():
    return open_page(PAGE)


def _table(at) -> dict[str, tuple]:
    df = at.dataframe[0].value
    return {row["quantity"]: (row["value"], row["not measured because"]) for _, row in df.iterrows()}


def test_page_opens_with_an_invitation_to_upload(page):
    assert page.title[0].value == "Measure a CT"
    assert any("Upload a CT on the left" in i.value for i in page.info)
    assert not page.error


def test_nifti_upload_is_measured(page):
    page.file_uploader(key="ms_up_nifti").upload("ts_example_ct.nii.gz", (DATA / "ts_example_ct.nii.gz").read_bytes())
    page.run()
    assert not page.exception and not page.error
    rows = _table(page)
    assert "identifies muscle" in rows["muscle mass share"][1]
    assert rows["soft tissue -29..150 HU"][1] == "partial scan, see coverage"
    assert any("soft tissue -29..150 HU" in m.value for m in page.markdown)
    assert len(page.image) == 3  # axial, coronal, sagittal


def test_dicom_series_as_files_zip_and_folder(page):
    files = [(f.name, f.read_bytes(), "application/dicom") for f in FILES]
    page.radio(key="ms_kind").set_value("files").run()
    page.file_uploader(key="ms_up_files").set_value(files).run()
    assert not page.exception and not page.error, page.error
    assert any("within the scan" in m.value.lower() for m in page.markdown)
    caption = " ".join(c.value for c in page.caption)
    assert "512, 512, 20" in caption and "0.976562 x 0.976562 x 2 mm" in caption
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content, _ in files:
            z.writestr(f"series/{name}", content)
    page.file_uploader(key="ms_up_files").set_value(("series.zip", buf.getvalue(), "application/zip")).run()
    assert not page.error and "512, 512, 20" in " ".join(c.value for c in page.caption)
    page.radio(key="ms_kind").set_value("folder").run()
    page.file_uploader(key="ms_up_folder").set_value([(f"series/{n}", c, t) for n, c, t in files[::-1]]).run()
    assert not page.error and "512, 512, 20" in " ".join(c.value for c in page.caption)


def test_refusals_show_the_reason_and_force_measures(page):
    page.file_uploader(key="ms_up_nifti").upload("mr.nii.gz", (DATA / "ts_example_mr.nii.gz").read_bytes())
    page.run()
    assert not page.exception
    message = page.error[0].value
    assert message.startswith("Not measured: mr.nii.gz") and "does not look like CT in Hounsfield units" in message
    page.checkbox(key="ms_force").check().run()
    assert not page.error and page.dataframe
    page.radio(key="ms_kind").set_value("files").run()
    page.file_uploader(key="ms_up_files").set_value([(f.name, f.read_bytes(), "application/dicom")
                                                      for i, f in enumerate(FILES) if i != 9]).run()
    assert "irregular slice spacing" in page.error[0].value and "2, 4 mm" in page.error[0].value
