"""Golden tensors for HiFi-GAN's multi-scale discriminator, made by HiFi-GAN's own code.

No installable package ships jik876/hifi-gan's MultiScaleDiscriminator, so this script imports ``models.py``
from a checkout given on the command line (never copied here) and records one training step of its MSD:

    git clone https://github.com/jik876/hifi-gan /tmp/hifi-gan      # read at 4769534
    .venv/bin/python plugins/distill-discriminators/tests/make_msd_golden.py /tmp/hifi-gan

What it saves (tests/data/hifigan_msd.pt, read by test_msd_golden.py):
- the initial weights, by HiFi-GAN's state_dict names: int8 codes times a power of two per tensor, so the float32
  weights are exact and the file holds one byte per weight; spectral norm's u and v in float32;
- the inputs ``real`` and ``fake`` [2, 1, 256];
- the D step as train.py runs it: ``msd(real, fake)`` in train mode (real, then fake, per scale: two power
  iterations of spectral norm), every scale's logits and feature maps, ``discriminator_loss``, backward, then
  AdamW with config_v1.json's lr and betas;
- after the step: spectral norm's u and v, and the generator's losses from HiFi-GAN's ``generator_loss`` and
  ``feature_loss`` (x2, logits included) with the MSD in eval mode (weights as the step left them, no power
  iteration), the fake's logits; and, for the record, the same losses in train mode as train.py computes them
  (two more power iterations first).

HiFi-GAN's MSD has no width option: at full width it holds 29.6M parameters (about 113 MiB in float32). The
script builds it at ``--width`` (1/8 by default, the smallest keeping its grouped convs divisible) by giving
models.py a Conv1d that multiplies every channel count but the single input and output channel; the modules'
forward code, pooling and norms are HiFi-GAN's, untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "data" / "hifigan_msd.pt"
SHAPE = (2, 1, 256)
SEED = 20


def import_models(checkout: Path, width: float) -> ModuleType:
    """HiFi-GAN's models.py from ``checkout``, its Conv1d multiplying channel counts by ``width``."""
    if not (checkout / "models.py").is_file():
        raise SystemExit(f"{checkout}: no models.py here; expected a checkout of jik876/hifi-gan")
    sys.path.insert(0, str(checkout))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import models  # noqa: PLC0415 - HiFi-GAN's file, from the path given

    def conv1d(cin: int, cout: int, *args: object, **kwargs: object) -> nn.Conv1d:
        return nn.Conv1d(*(c if c == 1 else int(c * width) for c in (cin, cout)), *args, **kwargs)

    models.Conv1d = conv1d
    return models


def seeded_codes(state: dict[str, torch.Tensor], seed: int) -> dict[str, tuple[torch.Tensor, int]]:
    """Every weight and bias as (int8 codes, exponent): value = codes * 2 ** exponent. Conv weights get a
    spread near 1 / sqrt(fan-in), biases about 0.1, weight-norm magnitudes g in [0.25, 1)."""
    g = torch.Generator().manual_seed(seed)
    codes = {}
    for name, value in state.items():
        leaf = name.rpartition(".")[2]
        if leaf in ("weight_u", "weight_v") and name.replace(leaf, "weight_orig") in state:
            continue  # spectral norm's power-iteration vectors: kept as float32
        if leaf == "weight_g":
            c, exponent = torch.randint(32, 128, value.shape, generator=g, dtype=torch.int8), -7
        elif leaf == "bias":
            c, exponent = torch.randint(-127, 128, value.shape, generator=g, dtype=torch.int8), -10
        else:
            fan_in = value[0].numel()
            exponent = round(math.log2(1 / math.sqrt(fan_in) / 73))  # codes' spread is about 73
            c = torch.randint(-127, 128, value.shape, generator=g, dtype=torch.int8)
        codes[name] = (c, exponent)
    return codes


def decoded(codes: dict[str, tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """The float32 weights the codes stand for."""
    return {name: c.float() * 2.0**exponent for name, (c, exponent) in codes.items()}


def power_vectors(msd: nn.Module) -> dict[str, torch.Tensor]:
    """Spectral norm's u and v buffers, by state_dict name."""
    return {
        k: v.clone()
        for k, v in msd.state_dict().items()
        if k.endswith(("weight_u", "weight_v")) and k.replace(k.rpartition(".")[2], "weight_orig") in msd.state_dict()
    }


def provenance(checkout: Path) -> dict[str, str]:
    """Which HiFi-GAN made the goldens: its commit when the checkout is a git one, and models.py's hash."""
    digest = hashlib.sha256((checkout / "models.py").read_bytes()).hexdigest()
    try:
        commit = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    return {
        "repository": "jik876/hifi-gan",
        "commit": commit,
        "models.py sha256": digest,
        "torch": str(torch.__version__),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a checkout of jik876/hifi-gan (holds models.py)")
    parser.add_argument("--width", type=float, default=0.125, help="channel multiplier (default 1/8)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    models = import_models(checkout, args.width)
    config = json.loads((checkout / "config_v1.json").read_text())

    torch.manual_seed(SEED)  # spectral norm draws its u and v here
    msd = models.MultiScaleDiscriminator()
    codes = seeded_codes(msd.state_dict(), SEED)
    msd.load_state_dict({**msd.state_dict(), **decoded(codes)})
    initial_vectors = power_vectors(msd)
    g = torch.Generator().manual_seed(SEED + 1)
    real, fake = torch.randn(SHAPE, generator=g), 0.5 * torch.randn(SHAPE, generator=g)

    # train.py's D step (the MSD half): both branches through msd(y, y_hat), real first per scale
    optimizer = torch.optim.AdamW(
        msd.parameters(), config["learning_rate"], betas=[config["adam_b1"], config["adam_b2"]]
    )
    msd.train()
    r_logits, f_logits, r_maps, f_maps = msd(real, fake.detach())
    d_loss, _, _ = models.discriminator_loss(r_logits, f_logits)
    optimizer.zero_grad()
    d_loss.backward()
    optimizer.step()

    with torch.no_grad():
        msd.eval()  # our generator pass: D read-only, no power iteration
        _, g_logits, g_real_maps, g_fake_maps = msd(real, fake)
        gen_eval = models.generator_loss(g_logits)[0]
        feat_eval = models.feature_loss(g_real_maps, g_fake_maps)
        vectors_after = power_vectors(msd)
        msd.train()  # train.py's generator pass: two more power iterations on scale 0
        _, t_logits, t_real_maps, t_fake_maps = msd(real, fake)
        gen_train = models.generator_loss(t_logits)[0]
        feat_train = models.feature_loss(t_real_maps, t_fake_maps)

    golden = {
        "provenance": provenance(checkout),
        "width": args.width,
        "seed": SEED,
        "optimizer": {"lr": config["learning_rate"], "betas": [config["adam_b1"], config["adam_b2"]]},
        "codes": codes,
        "vectors": initial_vectors,
        "real": real,
        "fake": fake,
        "d_step": {
            "real_logits": [t.detach() for t in r_logits],
            "fake_logits": [t.detach() for t in f_logits],
            "real_maps": [[t.detach() for t in m] for m in r_maps],
            "fake_maps": [[t.detach() for t in m] for m in f_maps],
            "loss": d_loss.detach(),
        },
        "after_step": {
            "vectors": vectors_after,
            "fake_logits": list(g_logits),
            "gen_loss": gen_eval,
            "feat_loss": feat_eval,
            "train_mode_gen_loss": gen_train,
            "train_mode_feat_loss": feat_train,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(golden, args.out)
    params = sum(p.numel() for p in msd.parameters())
    print(
        f"{args.out}: {args.out.stat().st_size / 1024:.0f} KiB; MSD at width {args.width}: {params} parameters; "
        f"D loss {d_loss.item():.6f}; generator pass, eval mode: gen {gen_eval.item():.6f} feat "
        f"{feat_eval.item():.6f}; train mode (train.py): gen {gen_train.item():.6f} feat {feat_train.item():.6f}"
    )


if __name__ == "__main__":
    main()
