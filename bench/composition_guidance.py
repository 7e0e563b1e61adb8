"""Research bench for body-composition steering (issue 35; vctcore.models.attribute_guidance).

Not used by the shipped generator. ``bench/guidance/regressor_guide47.safetensors`` is the regressor these steps
made for checkpoints/default (seed 47, 320 phantoms), so ``screen`` can start from it. Steps, each resumable by its output files (PREFIX: a path prefix):

    vct phantom --n 320 --seed 47 --out workspace/cohorts/guide47 --workers 2
    python bench/composition_guidance.py encode --cohort workspace/cohorts/guide47 --prefix P
    python bench/composition_guidance.py x0hat --prefix P --draws 2
    python bench/composition_guidance.py train --prefix P --epochs 20 --out P.reg.pt
    python bench/composition_guidance.py screen --cohort workspace/cohorts/eval100 --n 8 --reg P.reg.pt --out s.csv
    python bench/composition_guidance.py screen ... --no-steer --out none.csv      # the baseline
    python bench/composition_guidance.py recon --prefix P --n 24 --reg P.reg.pt --out recon.csv
    python bench/composition_guidance.py table s.csv none.csv recon.csv --cohort workspace/cohorts/eval100

Linear guide (vctcore.models.attribute_guidance.LinearGuide, what a generator's composition_guide.safetensors holds):

    python bench/composition_guidance.py collect --cohort POOL --start 0 --stop 200 --out TRAJ --reg bench/guidance/regressor_guide47.safetensors
    python bench/composition_guidance.py fit-linear --trajectories TRAJ --cohort POOL --steps 1-7 --out guide.safetensors
    python bench/composition_guidance.py screen --cohort POOL --start 316 --n 16 --linear guide.safetensors --out s.csv

``collect``: sample the cohort's rows (seed 777), 60 % of them steered by the CNN regressor toward the row's
values jittered by up to 3 units (so the trajectories span more than the unsteered spread), and store per
row every solver step's clean-latent estimate, the final latent and the final image's merged-map
measurement (TRAJ/NNNN.npz). ``fit-linear``: the calibration recorded = a * measured + b on the cohort's
first 150 real images, then one ridge map per chosen solver step (0 = the first, t 999) from its estimates
to the calibrated measurement.

``encode``: the generator's normalised joint latents of a phantom cohort (P.lat.npy, float16) and its recorded
attributes (P.attrs.csv). ``x0hat``: the diffusion's clean-latent estimates from noised latents at random
timesteps 100-999 (P.x0.npy), what the regressor reads while sampling. ``train``: the latent regressor on
both (first 40 patients held out; prints their MAE). ``screen``: generate a cohort's first rows with and without
steering toward their recorded bfp_pct / mmp_pct / weight_kg, measure each image as the trial does
(merged-map measurement). ``recon``: decode the encoded real latents (the autoencoder round trip) and measure.
``table``: measured vs requested, after the fidelity suite's calibration (recorded = a * measured + b, fit on the
cohort's real images), and the regressor's reading vs the measurement.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ATTRS = ("bfp_pct", "mmp_pct", "weight_kg")


def _measure(g, hu: np.ndarray, seg: np.ndarray) -> dict:
    from vctcore.fidelity.measures import image_measurements
    from vctcore.labels import MERGED_CLASSES
    from vctcore.volume import CTVolume, LabelMap, make_affine

    affine = make_affine(g.cfg.spacing_mm, tuple(g.manifest.get("origin_mm", (0.0, 0.0, 0.0))))
    return image_measurements(CTVolume(hu, affine), LabelMap(seg, affine, {k: v for k, v in MERGED_CLASSES.items() if k}))


def _regressor(path: str | None, **cfg):
    from vctcore.models.attribute_guidance import GuidanceConfig, LatentRegressor

    reg = LatentRegressor(GuidanceConfig(attributes=ATTRS, **cfg), 8)
    if path and path.endswith(".safetensors"):
        from safetensors.torch import load_file

        reg.load_state_dict(load_file(path))
    elif path:
        reg.load_state_dict(torch.load(path, weights_only=True))
    for p in reg.parameters():
        p.requires_grad_(False)
    return reg.eval()


def encode(a) -> None:
    from vctcore.generator import Generator
    from vctcore.labels import MERGED_CLASSES
    from vctcore.models.encode import encode_patient
    from vctcore.volume import read_ct, read_labels

    cohort = Path(a.cohort)
    table = pd.read_csv(cohort / "attributes.csv")
    g = Generator.from_pretrained(post=False)
    z_all = np.lib.format.open_memmap(f"{a.prefix}.lat.npy", mode="w+", dtype=np.float16,
                                      shape=(len(table), g.cfg.latent_channels, *g.cfg.latent_shape))
    t0 = time.time()
    for k, pid in enumerate(table["id"].astype(str)):
        ct = read_ct(cohort / "patients" / pid / "ct.nii.gz")
        seg = read_labels(cohort / "patients" / pid / "seg.nii.gz", names=MERGED_CLASSES, like=ct)
        x = torch.from_numpy(np.asarray(ct.data, np.float32))[None, None]
        s = torch.from_numpy(np.asarray(seg.data).astype(np.int64))[None]
        z_all[k] = g.dm.normalise(encode_patient(g.ae, g.seg_ae, x, s, g.cfg))[0].numpy().astype(np.float16)
        print(f"encoded {k + 1}/{len(table)} {time.time() - t0:.0f} s", flush=True)
    z_all.flush()
    table.to_csv(f"{a.prefix}.attrs.csv", index=False)


@torch.no_grad()
def x0hat(a) -> None:
    from vctcore.generator import Generator
    from vctcore.models.conditioning import attribute_bins

    lat = np.load(f"{a.prefix}.lat.npy", mmap_mode="r")
    attrs = pd.read_csv(f"{a.prefix}.attrs.csv")
    dm = Generator.from_pretrained(post=False).dm
    acp = dm.train_scheduler().alphas_cumprod
    bins = torch.from_numpy(attribute_bins(attrs, dm.cfg.condition_on))
    n, d = len(lat), a.draws
    out = np.lib.format.open_memmap(f"{a.prefix}.x0.npy", mode="w+", dtype=np.float16, shape=(n, d, *lat.shape[1:]))
    ts = np.random.default_rng(a.seed).integers(100, 1000, size=(n, d))
    pairs = [(i, j) for i in range(n) for j in range(d)]
    for s in range(0, len(pairs), 4):
        pp = pairs[s:s + 4]
        z0 = torch.stack([torch.from_numpy(lat[i].astype(np.float32)) for i, _ in pp])
        t = torch.tensor([int(ts[i, j]) for i, j in pp])
        eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(a.seed * 100003 + s))
        al = acp[t].float().view(-1, 1, 1, 1, 1)
        zt = al.sqrt() * z0 + (1 - al).sqrt() * eps
        out_t = dm.denoise(zt, t, dm.embed(bins[[i for i, _ in pp]]))
        for k, (i, j) in enumerate(pp):
            out[i, j] = dm.predict_x0(out_t[k:k + 1], zt[k:k + 1], int(t[k]), acp)[0].numpy().astype(np.float16)
        print(f"x0-hat {s + len(pp)}/{len(pairs)}", flush=True)
    out.flush()


def train(a) -> None:
    lat = np.load(f"{a.prefix}.lat.npy")
    x0 = np.load(f"{a.prefix}.x0.npy") if Path(f"{a.prefix}.x0.npy").exists() else None
    y = pd.read_csv(f"{a.prefix}.attrs.csv")[list(ATTRS)].to_numpy(np.float32)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    nv = 40
    reg = _regressor(None)
    for p in reg.parameters():
        p.requires_grad_(True)
    reg.train()
    reg.mean.copy_(torch.tensor(y[nv:].mean(0)))
    reg.std.copy_(torch.tensor(y[nv:].std(0)))
    opt = torch.optim.AdamW(reg.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs)

    def pick(i: int) -> np.ndarray:
        if x0 is not None and rng.random() < 0.6:
            return x0[i, rng.integers(x0.shape[1])]
        return lat[i]

    for ep in range(a.epochs):
        perm = rng.permutation(np.arange(nv, len(lat)))
        for s in range(0, len(perm) - 7, 8):
            idx = perm[s:s + 8]
            z = torch.from_numpy(np.stack([pick(i) for i in idx]).astype(np.float32))
            if rng.random() < 0.5:
                z = z.flip(2)  # left-right: composition does not depend on it
            loss = (((reg(z) - torch.from_numpy(y[idx])) / reg.std) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            reg.eval()
            pred = torch.cat([reg(torch.from_numpy(lat[i:i + 8].astype(np.float32))) for i in range(0, nv, 8)]).numpy()
            reg.train()
        print(f"epoch {ep + 1}: held-out MAE " + ", ".join(f"{k} {v:.2f}" for k, v in zip(ATTRS, np.abs(pred - y[:nv]).mean(0))),
              flush=True)
    torch.save(reg.state_dict(), a.out)


def _calibration(cohort: Path, n: int, cache: str) -> dict[str, tuple[float, float]]:
    """recorded = a * measured + b per attribute (weight: identity), fit on the cohort's first n real images."""
    from vctcore.fidelity.conditioning import fit_line
    from vctcore.trial.ground_truth import ImageRef, measure_images

    rec = pd.read_csv(cohort / "attributes.csv").iloc[:n].set_index("id")
    refs = [ImageRef(i, cohort / "patients" / i / "ct.nii.gz", cohort / "patients" / i / "seg.nii.gz") for i in rec.index]
    real = measure_images(refs, cache_dir=Path(cache), workers=2)
    cal = {k: fit_line([real[i][k] for i in rec.index], rec[k].tolist()) for k in ("bfp_pct", "mmp_pct")}
    return {**cal, "weight_kg": (1.0, 0.0)}


def collect(a) -> None:
    from vctcore.generator import Generator, patient_seed
    from vctcore.models.attribute_guidance import make_steer, target_matrix
    from vctcore.models.conditioning import attribute_bins

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    g = Generator.from_pretrained()
    g.guide = None
    table = pd.read_csv(Path(a.cohort) / "attributes.csv")
    reg = _regressor(a.reg, min_timestep=20, iterations=2, coarse=4)
    plan = np.random.default_rng(1234).random((len(table), 4))
    for i in range(a.start, min(a.stop, len(table))):
        f = out / f"{i:04d}.npz"
        if f.exists():
            continue
        row = table.iloc[i].to_dict()
        steered = plan[i, 0] < 0.6
        tgt = {k: row[k] + (6.0 * (plan[i, 1 + j] - 0.5) if steered else 0.0) for j, k in enumerate(ATTRS)}
        inner = make_steer(reg, target_matrix(reg, [tgt])) if steered else None
        x0s, ts = [], []

        def record(x0, t, inner=inner, x0s=x0s, ts=ts):
            x = inner(x0, t) if inner is not None else x0
            x0s.append(x[0].float().numpy().astype(np.float16))
            ts.append(t)
            return x

        noise = torch.randn((1, g.cfg.latent_channels, *g.cfg.latent_shape),
                            generator=torch.Generator().manual_seed(patient_seed(777, i)))
        z = g.dm.sample(torch.from_numpy(attribute_bins(table.iloc[[i]], g.cfg.diffusion.condition_on)), noise, steer=record)
        m = _measure(g, *g.decode(z, row))
        np.savez(f, x0=np.stack(x0s), t=np.array(ts), final=g.dm.normalise(z)[0].float().numpy().astype(np.float16),
                 measured=np.array([m[k] for k in ATTRS], np.float32),
                 requested=np.array([row[k] for k in ATTRS], np.float32), steered=steered, id=row["id"])
        print(f"collected {i} {row['id']}", flush=True)


def fit_linear(a) -> None:
    import glob

    from vctcore.models.attribute_guidance import LinearGuide

    lo, hi = (int(v) for v in a.steps.split("-"))
    cal = _calibration(Path(a.cohort), a.calibrate_on, a.cache)
    files = sorted(glob.glob(str(Path(a.trajectories) / "*.npz")))
    first = np.load(files[0])
    estimates = {int(first["t"][k]): [] for k in range(lo, hi + 1)}
    y = []
    for f in files:
        d = np.load(f)
        y.append([cal[k][0] * d["measured"][j] + cal[k][1] for j, k in enumerate(ATTRS)])
        for k in range(lo, hi + 1):
            estimates[int(d["t"][k])].append(d["x0"][k])
    guide = LinearGuide.fit(ATTRS, {t: np.stack(v) for t, v in estimates.items()}, np.array(y), ridge=a.ridge)
    guide.meta.update({"calibration": {k: list(v) for k, v in cal.items()}, "sampler": "dpm++",
                       "steps": int(len(first["t"])), "strength": 1.0,
                       "trajectories": {"cohort": str(a.cohort), "rows": len(files), "seed": 777}})
    guide.save(a.out)
    print(f"guide at t {sorted(guide.maps, reverse=True)} from {guide.meta['n_trajectories']} trajectories -> {a.out}")


def screen(a) -> None:
    from vctcore.generator import Generator, patient_seed
    from vctcore.models.attribute_guidance import make_steer, target_matrix
    from vctcore.models.conditioning import attribute_bins

    g = Generator.from_pretrained()
    if a.linear:
        from vctcore.models.attribute_guidance import LinearGuide

        g.guide = LinearGuide.load(a.linear)
    table = pd.read_csv(Path(a.cohort) / "attributes.csv").iloc[a.start:a.start + a.n]
    reg = _regressor(a.reg, strength=a.strength, min_timestep=a.min_timestep, iterations=a.iterations,
                     coarse=a.coarse) if a.reg else None
    rows = []
    for i in range(len(table)):
        row = table.iloc[i].to_dict()
        noise = torch.randn((1, g.cfg.latent_channels, *g.cfg.latent_shape),
                            generator=torch.Generator().manual_seed(patient_seed(a.seed, a.start + i)))
        bins = torch.from_numpy(attribute_bins(table.iloc[[i]], g.cfg.diffusion.condition_on))
        steer = make_steer(reg, target_matrix(reg, [row])) if reg is not None and not a.no_steer else None
        if a.linear and not a.no_steer:
            steer = g._steer([row])
        z = g.dm.sample(bins, noise, steer=steer)
        hu, seg = g.decode(z, row)
        m = _measure(g, hu, seg)
        rec = {"id": row["id"], **{f"req_{k}": row[k] for k in ATTRS}, **{f"syn_{k}": m[k] for k in ATTRS}}
        if reg is not None:
            with torch.no_grad():
                rec.update({f"reg_{k}": v for k, v in zip(ATTRS, reg(g.dm.normalise(z))[0].tolist())})
        rows.append(rec)
        print(rec, flush=True)
    pd.DataFrame(rows).to_csv(a.out, index=False)


@torch.no_grad()
def recon(a) -> None:
    from vctcore.generator import Generator

    lat = np.load(f"{a.prefix}.lat.npy", mmap_mode="r")
    attrs = pd.read_csv(f"{a.prefix}.attrs.csv")
    g = Generator.from_pretrained()
    reg = _regressor(a.reg) if a.reg else None
    rows = []
    for i in range(a.n):
        z = torch.from_numpy(lat[i].astype(np.float32))[None]
        row = attrs.iloc[i].to_dict()
        m = _measure(g, *g.decode(g.dm.denormalise(z), row))
        rec = {"id": row["id"], **{f"req_{k}": row[k] for k in ATTRS}, **{f"syn_{k}": m[k] for k in ATTRS}}
        if reg is not None:
            rec.update({f"reg_{k}": v for k, v in zip(ATTRS, reg(z)[0].tolist())})
        rows.append(rec)
        print(rec, flush=True)
    pd.DataFrame(rows).to_csv(a.out, index=False)


def table(a) -> None:
    from vctcore.fidelity.conditioning import fit_line
    from vctcore.trial.ground_truth import ImageRef, measure_images

    cohort = Path(a.cohort)
    rec = pd.read_csv(cohort / "attributes.csv").iloc[:a.calibrate_on].set_index("id")
    refs = [ImageRef(i, cohort / "patients" / i / "ct.nii.gz", cohort / "patients" / i / "seg.nii.gz") for i in rec.index]
    real = measure_images(refs, cache_dir=Path(a.cache), workers=2)
    cal = {k: fit_line([real[i][k] for i in rec.index], rec[k].tolist()) for k in ("bfp_pct", "mmp_pct")}
    print("calibration (recorded = a * measured + b, real images): "
          + ", ".join(f"{k}: a {s:.3f} b {b:+.2f}" for k, (s, b) in cal.items()))
    for f in a.files:
        d = pd.read_csv(f)
        parts = [f"{Path(f).name} (n {len(d)})"]
        for k in ATTRS:
            s, b = cal.get(k, (1.0, 0.0))
            syn = s * d[f"syn_{k}"] + b
            err = syn - d[f"req_{k}"]
            text = f"{k}: MAE {err.abs().mean():.2f} bias {err.mean():+.2f} r {np.corrcoef(syn, d[f'req_{k}'])[0, 1]:.2f}"
            if f"reg_{k}" in d:
                text += f" (regressor vs measured MAE {(d[f'reg_{k}'] - syn).abs().mean():.2f})"
            parts.append(text)
        print(" | ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("encode"); p.add_argument("--cohort", required=True); p.add_argument("--prefix", required=True)
    p = sub.add_parser("x0hat"); p.add_argument("--prefix", required=True); p.add_argument("--draws", type=int, default=2)
    p.add_argument("--seed", type=int, default=5)
    p = sub.add_parser("train"); p.add_argument("--prefix", required=True); p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0); p.add_argument("--out", required=True)
    p = sub.add_parser("screen"); p.add_argument("--cohort", required=True); p.add_argument("--n", type=int, default=8)
    p.add_argument("--reg"); p.add_argument("--no-steer", action="store_true"); p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strength", type=float, default=1.0); p.add_argument("--min-timestep", type=int, default=100)
    p.add_argument("--iterations", type=int, default=1); p.add_argument("--coarse", type=int, default=1)
    p.add_argument("--start", type=int, default=0); p.add_argument("--linear", help="a LinearGuide file to steer with")
    p.add_argument("--out", required=True)
    p = sub.add_parser("collect"); p.add_argument("--cohort", required=True); p.add_argument("--start", type=int, default=0)
    p.add_argument("--stop", type=int, default=200); p.add_argument("--reg", required=True); p.add_argument("--out", required=True)
    p = sub.add_parser("fit-linear"); p.add_argument("--trajectories", required=True); p.add_argument("--cohort", required=True)
    p.add_argument("--steps", default="1-7"); p.add_argument("--ridge", type=float, default=1e3)
    p.add_argument("--calibrate-on", type=int, default=150); p.add_argument("--cache", default="workspace/cache/measure")
    p.add_argument("--out", required=True)
    p = sub.add_parser("recon"); p.add_argument("--prefix", required=True); p.add_argument("--n", type=int, default=24)
    p.add_argument("--reg"); p.add_argument("--out", required=True)
    p = sub.add_parser("table"); p.add_argument("files", nargs="+"); p.add_argument("--cohort", required=True)
    p.add_argument("--calibrate-on", type=int, default=24); p.add_argument("--cache", default="workspace/cache/measure")
    a = ap.parse_args()
    torch.set_num_threads(2)
    {"encode": encode, "x0hat": x0hat, "train": train, "screen": screen, "recon": recon, "table": table,
     "collect": collect, "fit-linear": fit_linear}[a.cmd](a)


if __name__ == "__main__":
    main()
