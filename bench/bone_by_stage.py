"""Which decoding stage makes lumbar trabecular bone too dense (issue 35, item 3).

For the first N patients of a real (phantom) cohort: encode CT + merged segmentation to the joint latent,
decode the image with the image autoencoder alone, then with the post-processor (reading the patient's
sex and age, and reading nothing), and measure the lumbar trabecular HU of each image inside the *real*
segmentation (``vctcore.fidelity.measures.lumbar_density_hu``), so only the image differs. Also the mean
HU over the whole real bone mask. Prints one JSON line per patient, then the means and the correlation of
each with age.

    python bench/bone_by_stage.py --cohort workspace/cohorts/eval100 --n 16 [--csv out.csv]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

STAGES = ("real", "ae_only", "ae_post", "ae_post_no_attributes")


def main(argv: list[str] | None = None) -> dict:
    from vctcore.fidelity.anatomy import body_mask
    from vctcore.fidelity.measures import lumbar_density_hu
    from vctcore.generator import Generator
    from vctcore.labels import MERGED_CLASS_IDS, MERGED_CLASSES
    from vctcore.models.encode import encode_patient
    from vctcore.volume import CTVolume, read_ct, read_labels

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort", required=True)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--csv")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    cohort = Path(a.cohort)
    table = pd.read_csv(cohort / "attributes.csv").iloc[:a.n]
    g = Generator.from_pretrained()
    post = g.post
    rows = []
    for rec in table.to_dict("records"):
        pdir = cohort / "patients" / str(rec["id"])
        ct = read_ct(pdir / "ct.nii.gz")
        seg = read_labels(pdir / "seg.nii.gz", names=MERGED_CLASSES, like=ct)
        x = torch.from_numpy(np.asarray(ct.data, np.float32))[None, None]
        s = torch.from_numpy(np.asarray(seg.data).astype(np.int64))[None]
        attrs = {"sex": rec["sex"], "age_years": rec["age_years"]}
        with torch.no_grad():
            z = encode_patient(g.ae, g.seg_ae, x, s, g.cfg)
            g.post = None
            images = {"ae_only": g.decode(z, attrs)[0]}
            g.post = post
            images["ae_post"] = g.decode(z, attrs)[0]
            images["ae_post_no_attributes"] = g.decode(z, {})[0]
        mask = body_mask(ct)
        bone = np.asarray(seg.data) == MERGED_CLASS_IDS["bone"]
        out = {"id": rec["id"], "age_years": rec["age_years"],
               "real": lumbar_density_hu(ct, seg, mask)[0], "bone_mask_mean_real": float(np.asarray(ct.data)[bone].mean())}
        for k, hu in images.items():
            out[k] = lumbar_density_hu(CTVolume(hu, ct.affine), seg, mask)[0]
            out[f"bone_mask_mean_{k}"] = float(hu[bone].mean())
        rows.append(out)
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}), flush=True)
    df = pd.DataFrame(rows)
    if a.csv:
        df.round(2).to_csv(a.csv, index=False)
    summary = {"n": len(df), "lumbar_trabecular_hu": {k: round(float(df[k].mean()), 1) for k in STAGES},
               "bone_mask_mean_hu": {k: round(float(df[f"bone_mask_mean_{k}"].mean()), 1) for k in STAGES},
               "r_with_age": ({k: round(float(np.corrcoef(df["age_years"], df[k])[0, 1]), 2) for k in STAGES}
                              if len(df) >= 3 else None)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
