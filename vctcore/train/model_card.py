"""Model card of a generator directory: what it was trained on, how, how good it is, file hashes.

``write_model_card(gen_dir, metrics)`` writes ``gen_dir/model_card.md`` from the manifest plus an
optional metrics dict (reconstruction and fidelity figures, each with its definition) and stores
the metrics in ``gen_dir/metrics.json``. Both files are listed (with sha256) in the card itself
except the card, whose own hash cannot be inside it.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from vctcore.models.checkpoint import sha256_file
from vctcore.provenance import read_versions


#: how the model card names each sampler of vctcore.models.config.SAMPLERS
SAMPLER_NAMES = {"ddim": "DDIM", "dpm++": "DPM-Solver++(2M)", "ddpm": "DDPM"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def update_model_card(gen_dir: str | Path, metrics: dict[str, Any], *, notes: str | None = None) -> Path:
    """Merge ``metrics`` into ``gen_dir/metrics.json`` (same keys replaced) and rewrite the card."""
    gen_dir = Path(gen_dir)
    path = gen_dir / "metrics.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(metrics)
    if notes is None and (gen_dir / "notes.md").exists():
        notes = (gen_dir / "notes.md").read_text()
    return write_model_card(gen_dir, merged, notes=notes or "")


def _held_out_change(c: dict) -> str:
    """A continuation record's held-out figure before -> after: loss (diffusion), Dice (segmentation decoder),
    or the record's own ``held_out`` text (e.g. a post-processor checked on reconstructions)."""
    if "val_dice_before" in c:
        return f"Dice {c['val_dice_before']:.4g} -> {c['val_dice_after']:.4g}"
    if "val_loss_before" in c:
        return f"loss {c['val_loss_before']:.4g} -> {c['val_loss_after']:.4g}"
    return c.get("held_out", "")


def write_model_card(gen_dir: str | Path, metrics: dict[str, Any] | None = None, *, notes: str = "") -> Path:
    """Write ``model_card.md`` (and ``metrics.json`` when ``metrics`` is given) into ``gen_dir``."""
    gen_dir = Path(gen_dir)
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    cfg = json.loads((gen_dir / "config.json").read_text())
    if metrics is not None:
        (gen_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    elif (gen_dir / "metrics.json").exists():
        metrics = json.loads((gen_dir / "metrics.json").read_text())
    tr = manifest.get("training", {})
    lines = [
        f"# Model card: vct conditional CT generator `{gen_dir.name}`",
        "",
        "Conditional latent diffusion model after Killeen et al. (stacked VQ-VAE image autoencoder, "
        "segmentation autoencoder on the 16 merged classes, 3D latent diffusion U-Net with classifier-free "
        "guidance on sex/age/height/weight bins, post-processing U-Net), built from MONAI blocks.",
        "",
        "## Intended use and limits",
        "- Synthesises whole-body CT volumes (HU) and a joint 16-class segmentation for virtual clinical trials "
        "of radiology AI in the product's default world.",
        "- Trained on **digital-human phantoms**, not patients: it reproduces the phantom world, with its smooth "
        "analytic organs and no pathology, contrast or scanner table. Do not read its images as clinical data.",
        "- Attributes outside the training support (see `manifest.json` `support`) produce a warning; results "
        "there are extrapolations.",
        "",
        "## Training",
        f"- Preset: `{cfg['name']}`; grid {cfg['grid_shape']} voxels at {cfg['spacing_mm']} mm; latent "
        f"compression {2 ** sum(len(lv['channels']) for lv in cfg['image_ae']['levels'])}x per axis.",
        f"- Cohort: {tr.get('n_patients')} patients from `{tr.get('cohort')}` (fingerprint "
        f"`{tr.get('cohort_fingerprint')}`), seed {tr.get('seed')}, started {tr.get('created_utc') or tr.get('started')}.",
        f"- Conditioning: {', '.join(cfg['diffusion']['condition_on'])}; sampler "
        f"{SAMPLER_NAMES.get(cfg['diffusion'].get('sampler', 'ddim'), cfg['diffusion'].get('sampler'))} "
        f"{cfg['diffusion']['sample_steps']} steps, guidance {cfg['diffusion']['guidance_scale']}"
        + (f" at noise levels sigma in ({cfg['diffusion']['guidance_interval'][0]:g}, "
           f"{cfg['diffusion']['guidance_interval'][1]:g}] (the conditional model alone elsewhere)."
           if cfg["diffusion"].get("guidance_interval") else "."),
        "",
        "| stage | steps | minutes | final loss (mean of last 50) |",
        "|---|---|---|---|",
    ]
    for stage, s in tr.get("stages", {}).items():
        lines.append(f"| {stage} | {s['steps']} | {s['seconds'] / 60:.1f} | {s['final_loss_mean50']:.4g} |")
    budget = tr.get("time_budget")
    if budget:
        cut = [f"{k} {d['steps']}/{d['configured_steps']} steps" for k, d in budget.get("stages", {}).items()
               if d["steps"] < d["configured_steps"]]
        lines += ["", f"- Time budget: {budget.get('minutes')} training minutes (`vct train --budget-minutes`); "
                      + (f"shortened to fit on the training machine: {', '.join(cut)}." if cut
                         else "every stage ran its full schedule.")]
    conts = tr.get("continuations", [])
    if conts:
        lines += ["", "Continued training of a finished generator's networks (diffusion U-Net: EMA weights, held-out "
                      "loss with fixed noise and timesteps; segmentation decoder: frozen encoder and codebook, held-out "
                      "Dice, mean of the 16 organ classes; others: as each record says):", "",
                  "| stage | steps | batch | minutes | device | cohort (patients) | held-out before -> after |",
                  "|---|---|---|---|---|---|---|"]
        for c in conts:
            lines.append(f"| {c['stage']} | {c['steps']} | {c['batch_size']} | {c['seconds'] / 60:.1f} | {c['device']} | "
                         f"`{c['cohort']}` ({c['n_patients']}) | {_held_out_change(c)} |")
        lines += [f"- continuation {i + 1}: {c['method']}" for i, c in enumerate(conts) if c.get("method")]
    pv = read_versions(tr)
    lines += ["", f"Package versions: {', '.join(f'{k} {v}' for k, v in pv.items())}; "
                  f"card written on {platform.machine()} / Python {platform.python_version()}.", ""]
    lines += ["## Metrics", ""]
    if metrics:
        lines += ["| metric | value | target | definition |", "|---|---|---|---|"]
        for name, m in metrics.items():
            if isinstance(m, dict) and "value" in m:
                lines.append(f"| {name} | {_fmt(m['value'])} | {_fmt(m.get('target', ''))} | {m.get('definition', '')} |")
    else:
        lines.append("No metrics recorded yet (run `vct evaluate-generator`).")
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    lines += ["", "## Files (sha256)", ""]
    for f in sorted(p for p in gen_dir.iterdir() if p.is_file() and p.name != "model_card.md"):
        lines.append(f"- `{f.name}`: `{sha256_file(f)}`")
    path = gen_dir / "model_card.md"
    path.write_text("\n".join(lines) + "\n")
    return path
