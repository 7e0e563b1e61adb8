#!/usr/bin/env bash
# Encode the latents and train the diffusion of this candidate on a GPU machine, warm-started from the
# shipped default's diffusion (its image-latent channels grafted; the segmentation channels new).
#
#   bash docs/research/seg2x4d/gpu_diffusion.sh [MINUTES]      # from the repository root
#
# The run comes from $SEG2X4D_RUN (default workspace/runs/seg2x4d, restored from git as README.md says).
# The device machine has torch but not monai/nibabel and no network: carry wheels fetched here with
#   pip download monai==1.6.1 nibabel==5.4.2 --no-deps -d .whl
# (run's carry: [".whl"]). Writes $OUT/diffusion.f16.part* (the diffusion's weights as float16, cut
# under 16 MiB), $OUT/logs and $OUT/diffusion_loss*.json (bench/diffusion_loss.py, this run and the
# shipped generator); join the parts here with `cat diffusion.f16.part* > diffusion.safetensors`
# and put it in the run's models/ (a CPU session then runs the post stage and the evaluation).
set -euo pipefail
MINUTES=${1:-6}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import torch, monai; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
RUN=/tmp/seg2x4d_run
rm -rf "$RUN" && cp -r "${SEG2X4D_RUN:-workspace/runs/seg2x4d}" "$RUN"
# the training cohort, rebuilt byte for byte (the run knows it by content: vctcore.train.data.cohort_fingerprint)
time python3 -m vctcore.cli phantom --n 320 --seed 43 --workers 0 --out /tmp/train43 --quiet
time python3 -m vctcore.cli train --cohort /tmp/train43 --run "$RUN" --preset "$HERE/preset_gpu.yaml" --seed 17 \
    --from-run checkpoints/default --warm-start diffusion --stages latents,diffusion --budget-minutes 0 \
    --max-minutes "$MINUTES" --device cuda
cp -r "$RUN/logs" "$RUN/warm_start.json" "$OUT/"
# held-out denoising loss, image and segmentation channels apart, of this diffusion (finished, or the EMA
# of its state) and of the shipped one, on eval100's first 8 patients rebuilt byte for byte
python3 -m vctcore.cli phantom --n 8 --seed 13 --out /tmp/eval8 --quiet
python3 bench/diffusion_loss.py --run "$RUN" --cohort /tmp/eval8 --device cuda > "$OUT/diffusion_loss.json"
python3 bench/diffusion_loss.py --checkpoint checkpoints/default --cohort /tmp/eval8 --device cuda \
    > "$OUT/diffusion_loss_default.json"
python3 - "$RUN" "$OUT" <<'PY'
import sys
from pathlib import Path

import torch

from vctcore.models.checkpoint import load_state
from vctcore.models.diffusion import LatentDiffusion
from vctcore.models.config import GeneratorConfig
from vctcore.models.checkpoint import save_module
from vctcore.train.export import _store_half
import json

run, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = GeneratorConfig.from_dict(json.loads((run / "run.json").read_text())["config"])
src = run / "models" / "diffusion.safetensors"
if not src.exists():  # stopped mid-stage: the EMA weights of the saved state
    st = load_state(run / "state" / "diffusion.pt")
    dm = LatentDiffusion(cfg.diffusion, cfg.latent_channels)
    dm.load_state_dict(st["modules"]["ema"])
    src = save_module(dm, out / "diffusion.f32.safetensors", kind="diffusion", config=cfg.to_dict())
    print("diffusion stopped at step", st["step"])
_store_half(src, out / "diffusion.f16.safetensors")
blob = (out / "diffusion.f16.safetensors").read_bytes()
for i in range(0, len(blob), 15 << 20):
    (out / f"diffusion.f16.part{i // (15 << 20)}").write_bytes(blob[i:i + (15 << 20)])
for f in ("diffusion.f16.safetensors", "diffusion.f32.safetensors"):
    (out / f).unlink(missing_ok=True)
PY
ls -la "$OUT"
