"""Tissue HU of a paper trial's images by sample type: are the generated images' tissues the real ones' HU?

For the first ``--n`` source patients of a finished paper-design trial that have a synthetic patient, reads
the real CT, its reconstruction and its first synthetic patient, and reports per image (in HU, over the
body's voxels): the mean and median of the fat band (-190..-30 HU, the measurement's adipose band), the
mean of the -29..150 HU band (muscle and other lean soft tissue), and the share of body voxels (> -500 HU)
between -30 and 0 HU, where fat/muscle interfaces blurred by the decoder land. Prints JSON: the per-image
rows and the mean per sample type.

    python bench/tissue_hu.py workspace/trials/paper_bfp [--n 6]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from vctcore.measure.body import DEFAULT_THRESHOLDS

FAT_HU = DEFAULT_THRESHOLDS.fat_hu
LEAN_HU = (-29.0, DEFAULT_THRESHOLDS.muscle_max_hu)
INTERFACE_HU = (-30.0, 0.0)
BODY_HU = DEFAULT_THRESHOLDS.body_hu


def interface_share(hu: np.ndarray) -> float:
    """Share of body voxels strictly between -30 and 0 HU (where blurred fat/muscle interfaces land)."""
    return float(((hu > INTERFACE_HU[0]) & (hu < INTERFACE_HU[1])).sum() / (hu > BODY_HU).sum())


def tissue_row(hu: np.ndarray) -> dict[str, float]:
    """The tissue figures of one CT (HU array, any axis order)."""
    body = hu > BODY_HU
    fat = (hu >= FAT_HU[0]) & (hu <= FAT_HU[1])
    lean = (hu >= LEAN_HU[0]) & (hu <= LEAN_HU[1])
    return {"fat_mean_hu": float(hu[fat].mean()), "fat_median_hu": float(np.median(hu[fat])),
            "lean_mean_hu": float(hu[lean].mean()), "interface_share": interface_share(hu),
            "fat_share": float(fat.sum() / body.sum())}


def main(argv: list[str] | None = None) -> dict:
    from vctcore.volume import read_ct

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trial", type=Path, help="a finished paper-design trial directory")
    p.add_argument("--n", type=int, default=6, help="source patients (default 6)")
    args = p.parse_args(argv)
    preds = pd.read_csv(args.trial / "predictions.csv")
    sources = preds.loc[preds["sample_type"] == "synthetic", "source_id"].drop_duplicates().head(args.n)
    rows = []
    for sid in sources:
        for stype in ("real", "reconstructed", "synthetic"):
            r = preds[(preds["source_id"] == sid) & (preds["sample_type"] == stype)].iloc[0]
            hu = read_ct(Path(r["image_dir"]) / "ct.nii.gz").data.astype(np.float32)
            rows.append({"source_id": sid, "sample_type": stype, "y_true": float(r["y_true"]),
                         "y_pred": float(r["y_pred"]), **tissue_row(hu)})
    table = pd.DataFrame(rows)
    means = table.groupby("sample_type", sort=False).mean(numeric_only=True).round(4)
    out = {"benchmark": "tissue_hu", "trial": str(args.trial), "n_sources": int(len(sources)),
           "bands_hu": {"fat": FAT_HU, "lean": LEAN_HU, "interface": INTERFACE_HU, "body_above": BODY_HU},
           "mean_by_sample_type": means.to_dict("index"), "rows": table.round(4).to_dict("records")}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
