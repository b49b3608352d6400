"""Bring your own checkpoint: each anchor's discriminator checkpoint, made by the anchor's own classes (random
weights: nothing is downloaded) and laid out as its own save path writes it, loads into ours by name (logits equal
the anchor's to 1e-5, the optimizer's state lands on the same parameters); ours exports in the anchor's format
and the anchor's classes load it with strict=True; the round trip gives back ours. A file that does not fit, is
not a checkpoint, or needs pickled objects gets one line.

HiFi-GAN ships in no package: its do_XXXXXXXX is built from bigvgan 2.4.1's MultiPeriodDiscriminator (its
DiscriminatorP is HiFi-GAN models.py's at 4769534: the same convs / conv_post under the same norm_f, and a
channel multiplier) and from the MSD state that HiFi-GAN's own models.py recorded in tests/data/hifigan_msd.pt
(make_msd_golden.py), with its optimizer over chain(msd, mpd) as its train.py builds it.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import os
import types
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from cqtd_anchors import BIGVGAN_CQTD as CQTD_BLOCK
from cqtd_anchors import signal_carrying
from disc_anchors import anchor
from disc_weights import assert_close
from distill_discriminators import (
    Adversarial,
    AdversarialConfig,
    StateMismatch,
    export_anchor_checkpoint,
    load_anchor_checkpoint,
    save_anchor_checkpoint,
)
from distill_discriminators.anchor_formats.detect import detect
from distill_discriminators.anchor_formats.hints import suggest
from torch import nn

from distill_core import InvalidConfig

GOLDEN = Path(__file__).resolve().parent / "data" / "hifigan_msd.pt"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: the machine's two cores are shared with the other test worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def waves(n=2048, seed=0, b=2):
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.randn(b, 1, n, generator=g), 0.3 * torch.randn(b, 1, n, generator=g)


def adam_steps(optimizer: torch.optim.Optimizer, steps: int = 2, seed: int = 7) -> None:
    """A few optimizer steps on random gradients, so its state (moments, step) is not a fresh one."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.randn(p.shape, generator=g)
        optimizer.step()


def flat_logits(subs_per_kind) -> list[torch.Tensor]:
    return [s.logits for subs in subs_per_kind for s in subs]


def states_by_param(optimizer: torch.optim.Optimizer) -> list[dict]:
    """The optimizer's per-parameter state, in its parameters' order."""
    return [optimizer.state[p] for g in optimizer.param_groups for p in g["params"]]


def assert_same_state(a: dict, b: dict, what: str) -> None:
    assert set(a) == set(b), what
    for key in a:
        assert torch.equal(torch.as_tensor(a[key]).float(), torch.as_tensor(b[key]).float()), f"{what}: {key}"


def ours_params_named(adv: Adversarial) -> dict[str, torch.nn.Parameter]:
    return dict(adv.discriminators.named_parameters())


def assert_round_trip(adv: Adversarial, config: AdversarialConfig, files: dict, name: str, *, resume=True) -> None:
    """The exported file, loaded into a fresh Adversarial of the same config, gives ``adv`` back."""
    back = Adversarial(config)
    assert load_anchor_checkpoint(back, files[name], resume=resume) != "distill"
    want, got = adv.discriminators.state_dict(), back.discriminators.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    if resume:
        for a, b in zip(states_by_param(adv.optimizer), states_by_param(back.optimizer)):
            assert_same_state(a, b, "round trip")
        assert int(back.updates) == int(adv.updates)


# --- DAC: Discriminator (ml.BaseModel), save_to_folder's weights.pth + optimizer.pth + scheduler.pth -------------

DAC_OPTIONS = {"periods": [2], "fft_sizes": [256, 128]}  # DAC has no width option: one MPD keeps it small


def dac_config(**more):
    return AdversarialConfig(
        preset="dac",
        discriminators=[
            {"kind": "mpd", "options": {"periods": DAC_OPTIONS["periods"]}},
            {"kind": "mrd", "options": {"fft_sizes": DAC_OPTIONS["fft_sizes"]}},
        ],
        **more,
    )


@pytest.fixture(scope="module")
def dac_run(tmp_path_factory):
    """DAC's discriminator after two AdamW steps with its ExponentialLR, saved by its own save_to_folder."""
    disc = anchor("dac.model.discriminator")
    torch.manual_seed(0)
    theirs = disc.Discriminator(**DAC_OPTIONS)
    signal_carrying(theirs, 1)
    optimizer = torch.optim.AdamW(theirs.parameters(), 1e-4, betas=(0.8, 0.99))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.999996)
    for step in range(2):
        adam_steps(optimizer, 1, seed=step)
        scheduler.step()
    folder = tmp_path_factory.mktemp("dac") / "latest"
    extra = {"optimizer.pth": optimizer.state_dict(), "scheduler.pth": scheduler.state_dict()}
    theirs.save_to_folder(folder, extra, package=False)  # DAC's train.py: save_to_folder(f"{save_path}/{tag}", ...)
    return theirs, optimizer, scheduler, folder


def test_dac_folder_resumes_with_equal_logits_optimizer_and_schedule(dac_run):
    theirs, optimizer, scheduler, folder = dac_run
    ours = Adversarial(dac_config(init="resume", init_from=str(folder)))  # the folder save_to_folder was given
    x, _ = waves()
    with torch.no_grad():
        expected = [fmap[-1] for fmap in theirs(x)]
        got = flat_logits(ours.judge(x))
    for i, (a, b) in enumerate(zip(got, expected)):
        assert_close(a, b, f"dac logits[{i}]")
    # the optimizer's state per parameter: DAC's i-th parameter is ours by name (convs.j.0.weight_g -> original0)
    theirs_names = [n for n, _ in theirs.named_parameters()]
    ours_names = [n for n, _ in ours.discriminators.named_parameters()]
    assert len(theirs_names) == len(ours_names)
    renamed = {
        "discriminators.0.convs.0.0.weight_g": "0.discriminators.0.convs.0.parametrizations.weight.original0",
        "discriminators.1.band_convs.2.4.0.bias": "1.discriminators.0.band_convs.2.4.bias",
        "discriminators.2.conv_post.weight_v": "1.discriminators.1.conv_post.parametrizations.weight.original1",
    }
    for theirs_name, ours_name in renamed.items():
        a = optimizer.state[dict(theirs.named_parameters())[theirs_name]]
        b = ours.optimizer.state[ours_params_named(ours)[ours_name]]
        assert_same_state(a, b, theirs_name)
    for a, b in zip(states_by_param(optimizer), states_by_param(ours.optimizer)):
        assert_same_state(a, b, "dac optimizer")  # DAC's order (MPDs, then MRDs, layer by layer) is ours here
    assert int(ours.updates) == 2
    assert ours.scheduler.last_epoch == scheduler.last_epoch == 2
    assert ours.optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert ours.optimizer.param_groups[0]["fused"] is True  # ours stays fused: the non-finite skip needs it


def test_dac_weights_file_and_state_dict_alone_load_their_weights(dac_run):
    theirs, _, _, folder = dac_run
    for source in (folder / "discriminator" / "weights.pth", theirs.state_dict()):
        ours = Adversarial(dac_config())
        assert load_anchor_checkpoint(ours, source) == "dac"
        x, _ = waves(seed=3)
        with torch.no_grad():
            assert_close(flat_logits(ours.judge(x))[-1], theirs(x)[-1][-1], "dac MRD logits")
        assert not ours.optimizer.state  # weights only: a fresh optimizer


def test_dac_export_loads_into_dacs_classes_strictly_and_round_trips(dac_run, tmp_path):
    theirs, optimizer, _, folder = dac_run
    disc = anchor("dac.model.discriminator")
    ours = Adversarial(dac_config(init="resume", init_from=str(folder)))
    files = export_anchor_checkpoint(ours, "dac")
    assert set(files) == {"discriminator/weights.pth", "discriminator/optimizer.pth", "discriminator/scheduler.pth"}
    fresh = disc.Discriminator(**DAC_OPTIONS)
    fresh.load_state_dict(files["discriminator/weights.pth"]["state_dict"], strict=True)
    x, _ = waves(seed=4)
    with torch.no_grad():
        for a, b in zip(fresh(x), theirs(x)):
            assert torch.equal(a[-1], b[-1])
    reloaded = torch.optim.AdamW(fresh.parameters(), 1e-4)
    reloaded.load_state_dict(files["discriminator/optimizer.pth"])
    for a, b in zip(states_by_param(optimizer), states_by_param(reloaded)):
        assert_same_state(a, b, "dac optimizer out")
    # its own loader, from the folder save_anchor_checkpoint writes, rebuilds it from the kwargs we record
    save_anchor_checkpoint(ours, "dac", tmp_path / "out")
    loaded, extra = disc.Discriminator.load_from_folder(tmp_path / "out", package=False, strict=True)
    assert set(extra) == {"optimizer.pth", "scheduler.pth"}
    with torch.no_grad():
        assert torch.equal(loaded(x)[-1][-1], theirs(x)[-1][-1])
    assert_round_trip(ours, dac_config(), {"folder": tmp_path / "out"}, "folder")


# --- HiFi-GAN: do_XXXXXXXX = {mpd, msd, optim_g, optim_d, steps, epoch} --------------------------------------


@pytest.fixture(scope="module")
def hifigan_do():
    """A HiFi-GAN do_ file at width 1/8: MPD by bigvgan's DiscriminatorP (HiFi-GAN's layout), MSD as HiFi-GAN's
    models.py wrote it, optim_d = AdamW(chain(msd.parameters(), mpd.parameters())) after two steps."""
    disc = anchor("bigvgan.discriminators")
    golden = torch.load(GOLDEN, weights_only=True)
    h = types.SimpleNamespace(
        discriminator_channel_mult=golden["width"], use_spectral_norm=False, mpd_reshapes=[2, 3, 5, 7, 11]
    )
    torch.manual_seed(0)
    mpd = disc.MultiPeriodDiscriminator(h)
    signal_carrying(mpd, 2)
    msd_state = {name: codes.float() * 2.0**exponent for name, (codes, exponent) in golden["codes"].items()}
    msd_state.update(golden["vectors"])
    msd_state = {k: msd_state[k] for k in [*golden["codes"], *golden["vectors"]]}
    # HiFi-GAN's state_dict order: per conv its bias and weight_orig (or weight_g, weight_v), then spectral norm's u, v
    order = list(golden["codes"])
    msd_params = [nn.Parameter(msd_state[k].clone()) for k in order]
    optim_d = torch.optim.AdamW(itertools.chain(msd_params, mpd.parameters()), 2e-4, betas=[0.8, 0.99])
    adam_steps(optim_d)
    with torch.no_grad():
        for k, p in zip(order, msd_params):
            msd_state[k] = p.detach().clone()
    do = {
        "mpd": mpd.state_dict(),
        "msd": msd_state,
        "optim_g": {},
        "optim_d": optim_d.state_dict(),
        "steps": 9,
        "epoch": 3,
    }
    return mpd, msd_params, order, optim_d, do, golden["width"]


def hifigan_config(width, **more):
    return AdversarialConfig(preset="hifigan_v1", width=width, **more)


def ours_name(name: str, spectral: bool = False) -> str:
    """An anchor's parameter name as ours: torch.nn.utils.weight_norm's g and v are the parametrisation's."""
    if spectral:
        return name
    return name.replace(".weight_g", ".parametrizations.weight.original0").replace(
        ".weight_v", ".parametrizations.weight.original1"
    )


def test_hifigan_do_file_resumes_by_name(hifigan_do, tmp_path):
    mpd, msd_params, order, optim_d, do, width = hifigan_do
    torch.save(do, tmp_path / "do_00000009")
    ours = Adversarial(hifigan_config(width, init="resume", init_from=str(tmp_path / "do_00000009")))
    real, fake = waves(n=1024)
    with torch.no_grad():
        _, g, _, _ = mpd(real, fake)
        ours.eval()
        got = ours.judge(fake)
    for i, logits in enumerate(g):
        assert_close(got[0][i].logits.flatten(1), logits, f"hifigan mpd[{i}]")
    msd = ours.discriminators[1].state_dict()  # HiFi-GAN's names; scale 0's spectral norm vectors came too
    assert all(torch.equal(msd[ours_name(k, k.startswith("discriminators.0."))], v) for k, v in do["msd"].items())
    # optimizer positions: HiFi-GAN's first are the MSD's (chain(msd, mpd)); ours list the MPD first
    named = ours_params_named(ours)
    for name, p in zip(order, msd_params):
        assert_same_state(
            optim_d.state[p], ours.optimizer.state[named["1." + ours_name(name, "weight_orig" in name)]], name
        )
    for name, p in mpd.named_parameters():
        assert_same_state(optim_d.state[p], ours.optimizer.state[named["0." + ours_name(name)]], name)
    assert int(ours.updates) == 2 and ours.scheduler.last_epoch == 3  # train.py's ExponentialLR(last_epoch=epoch)


def test_hifigans_msd_weights_give_hifigans_own_logits():
    """The MSD weights and vectors HiFi-GAN's models.py recorded, as a do_ file: in train mode, real then fake
    (one power iteration each), ours gives the logits HiFi-GAN's msd(y, y_hat) gave."""
    golden = torch.load(GOLDEN, weights_only=True)
    msd = {name: codes.float() * 2.0**exponent for name, (codes, exponent) in golden["codes"].items()}
    disc = anchor("bigvgan.discriminators")
    h = types.SimpleNamespace(
        discriminator_channel_mult=golden["width"], use_spectral_norm=False, mpd_reshapes=[2, 3, 5, 7, 11]
    )
    ours = Adversarial(hifigan_config(golden["width"]))
    load_anchor_checkpoint(
        ours, {"mpd": disc.MultiPeriodDiscriminator(h).state_dict(), "msd": {**msd, **golden["vectors"]}}
    )
    with torch.no_grad():
        real, fake = ours.judge(golden["real"])[1], ours.judge(golden["fake"])[1]
    for side, subs in (("real", real), ("fake", fake)):
        for i, sub in enumerate(subs):
            assert_close(sub.logits.flatten(1), golden["d_step"][f"{side}_logits"][i], f"hifigan msd {side}[{i}]")


def test_hifigan_export_loads_into_its_classes_and_round_trips(hifigan_do):
    mpd, msd_params, order, optim_d, do, width = hifigan_do
    disc = anchor("bigvgan.discriminators")
    ours = Adversarial(hifigan_config(width))
    load_anchor_checkpoint(ours, do, resume=True)
    files = export_anchor_checkpoint(ours, "hifigan")
    (name,) = files
    out = files[name]
    assert name == "do_00000002" and out["steps"] == 2 and out["epoch"] == 3
    fresh = disc.MultiPeriodDiscriminator(
        types.SimpleNamespace(discriminator_channel_mult=width, use_spectral_norm=False, mpd_reshapes=[2, 3, 5, 7, 11])
    )
    fresh.load_state_dict(out["mpd"], strict=True)
    assert set(out["msd"]) == set(do["msd"])  # HiFi-GAN's own names
    assert all(torch.equal(out["msd"][k], do["msd"][k]) for k in do["msd"])
    params = [nn.Parameter(out["msd"][k].clone()) for k in order]
    reloaded = torch.optim.AdamW(itertools.chain(params, fresh.parameters()), 2e-4)
    reloaded.load_state_dict(out["optim_d"])
    for a, b in zip(states_by_param(optim_d), states_by_param(reloaded)):
        assert_same_state(a, b, "hifigan optim_d out")
    assert all(g["initial_lr"] == 2e-4 for g in reloaded.param_groups)  # ExponentialLR(last_epoch=epoch) reads it
    assert_round_trip(ours, hifigan_config(width), files, name)


# --- BigVGAN: do_XXXXXXXX with MPD + MS-SB-CQTD (or MBD, or v1's MRD) ------------------------------------------

BIGVGAN_CQTD = {**CQTD_BLOCK, "cqtd_filters": 4, "sampling_rate": 24000}


def bigvgan_config(**more):
    return AdversarialConfig(
        preset="bigvgan_v2",
        discriminators=[
            {"kind": "mpd", "options": {"periods": [2, 3, 5, 7, 11], "width": 0.125}},
            {"kind": "cqtd", "options": {"sample_rate": 24000, "filters": 4}},
        ],
        **more,
    )


@pytest.fixture(scope="module")
def bigvgan_do():
    disc = anchor("bigvgan.discriminators")
    pytest.importorskip(
        "nnAudio.features", reason="nnAudio (BigVGAN's CQT) is not among the anchors: run `make anchors`"
    )
    h = types.SimpleNamespace(discriminator_channel_mult=0.125, use_spectral_norm=False, mpd_reshapes=[2, 3, 5, 7, 11])
    torch.manual_seed(0)
    mpd, mrd = disc.MultiPeriodDiscriminator(h), disc.MultiScaleSubbandCQTDiscriminator(copy.deepcopy(BIGVGAN_CQTD))
    signal_carrying(mpd, 3)
    signal_carrying(mrd, 4)
    optim_d = torch.optim.AdamW(itertools.chain(mrd.parameters(), mpd.parameters()), 2e-4, betas=[0.8, 0.99])
    adam_steps(optim_d)
    do = {
        "mpd": mpd.state_dict(),
        "mrd": mrd.state_dict(),
        "optim_g": {},
        "optim_d": optim_d.state_dict(),
        "steps": 2,
        "epoch": 0,
    }
    return mpd, mrd, optim_d, do


def test_bigvgan_do_file_with_cqtd_resumes_with_equal_logits(bigvgan_do):
    mpd, mrd, optim_d, do = bigvgan_do
    ours = Adversarial(bigvgan_config())
    assert load_anchor_checkpoint(ours, do, resume=True) == "bigvgan"
    real, fake = waves(n=4096)
    with torch.no_grad():
        got = ours.judge(fake)
        for k, theirs in enumerate((mpd, mrd)):
            _, logits, _, _ = theirs(real, fake)
            for i, lg in enumerate(logits):
                assert_close(got[k][i].logits.reshape(lg.shape), lg, f"bigvgan[{k}][{i}]")
    # chain(mrd, mpd): BigVGAN's first positions are the CQTD's conv_pres, ours the MPD's
    named = ours_params_named(ours)
    for name, p in mrd.named_parameters():
        mine = "1." + ours_name(name.replace(".conv_pres.", ".band_convs."))
        assert_same_state(optim_d.state[p], ours.optimizer.state[named[mine]], name)


def test_bigvgan_v2s_per_step_schedule_continues_from_its_steps(bigvgan_do):
    """BigVGAN-v2 steps its ExponentialLR every batch and saves the do_ file after ``steps`` of them, the decayed
    rate in optim_d: ours continues from there (one more step multiplies by gamma once). BigVGAN-v1's schedule is
    per epoch: a per-epoch config reads ``epoch``."""
    *_, do = bigvgan_do
    decayed = copy.deepcopy(do)
    for group in decayed["optim_d"]["param_groups"]:
        group["lr"] = 2e-4 * 0.9999996**2
    ours = Adversarial(bigvgan_config())
    load_anchor_checkpoint(ours, decayed, resume=True)
    assert ours.scheduler.last_epoch == 2
    ours.scheduler.step()
    assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.9999996**3, rel=1e-12)
    per_epoch = Adversarial(bigvgan_config(scheduler={"name": "exponential", "gamma": 0.999, "interval": "epoch"}))
    load_anchor_checkpoint(per_epoch, {**decayed, "epoch": 5}, resume=True)
    assert per_epoch.scheduler.last_epoch == 5


def test_bigvgan_export_needs_and_takes_its_own_cqt_buffers(bigvgan_do):
    mpd, mrd, optim_d, do = bigvgan_do
    disc = anchor("bigvgan.discriminators")
    ours = Adversarial(bigvgan_config())
    load_anchor_checkpoint(ours, do, resume=True)
    with pytest.raises(StateMismatch) as e:
        export_anchor_checkpoint(ours, "bigvgan")
    assert "\n" not in str(e.value) and "template" in str(e.value) and "MS-SB-CQTD" in str(e.value)
    files = export_anchor_checkpoint(ours, "bigvgan", template=do)
    out = files["do_00000002"]
    fresh = disc.MultiScaleSubbandCQTDiscriminator(copy.deepcopy(BIGVGAN_CQTD))
    fresh.load_state_dict(out["mrd"], strict=True)
    fresh_mpd = disc.MultiPeriodDiscriminator(
        types.SimpleNamespace(discriminator_channel_mult=0.125, use_spectral_norm=False, mpd_reshapes=[2, 3, 5, 7, 11])
    )
    fresh_mpd.load_state_dict(out["mpd"], strict=True)
    reloaded = torch.optim.AdamW(itertools.chain(fresh.parameters(), fresh_mpd.parameters()), 2e-4)
    reloaded.load_state_dict(out["optim_d"])
    for a, b in zip(states_by_param(optim_d), states_by_param(reloaded)):
        assert_same_state(a, b, "bigvgan optim_d out")
    real, fake = waves(n=4096, seed=5)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(fresh(real, fake)[1], mrd(real, fake)[1]))
    assert_round_trip(ours, bigvgan_config(), files, "do_00000002")


def test_bigvgan_mbd_loads_with_its_windows_checked():
    disc = anchor("bigvgan.discriminators")
    torch.manual_seed(0)
    mpd = disc.MultiPeriodDiscriminator(
        types.SimpleNamespace(discriminator_channel_mult=0.125, use_spectral_norm=False, mpd_reshapes=[2, 3])
    )
    mbd = disc.MultiBandDiscriminator({"mbd_fft_sizes": [256, 128]})
    signal_carrying(mbd, 5)
    do = {"mpd": mpd.state_dict(), "mrd": mbd.state_dict(), "steps": 0, "epoch": 0}
    mbd_options = {"fft_sizes": [256, 128], "padding": "center", "normalize_input": True, "first_layer_features": False}
    entries = [{"kind": "mpd", "options": {"periods": [2, 3], "width": 0.125}}, {"kind": "mrd", "options": mbd_options}]
    ours = Adversarial(AdversarialConfig(preset="hifigan_v1", discriminators=entries))
    load_anchor_checkpoint(ours, do)
    real, fake = waves(seed=6)
    with torch.no_grad():
        _, logits, _, _ = mbd(real, fake)
        for i, lg in enumerate(logits):
            assert_close(ours.judge(fake)[1][i].logits, lg, f"mbd[{i}]")
    files = export_anchor_checkpoint(ours, "bigvgan")  # Hann windows made here, as torchaudio makes them
    disc.MultiBandDiscriminator({"mbd_fft_sizes": [256, 128]}).load_state_dict(files["do_00000000"]["mrd"], strict=True)
    other = {**mbd_options, "fft_sizes": [512, 128]}
    wrong = Adversarial(
        AdversarialConfig(preset="hifigan_v1", discriminators=[entries[0], {"kind": "mrd", "options": other}])
    )
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(wrong, do)
    assert (
        "mrd.discriminators.0.spec_fn.window is a 256-point window, where discriminators[1] has fft_sizes[0] = 512"
        in str(e.value)
    )


def test_bigvgan_v1s_univnet_mrd_is_named_as_having_no_kind_here():
    disc = anchor("bigvgan.discriminators")
    h = types.SimpleNamespace(
        discriminator_channel_mult=0.125, use_spectral_norm=False, mpd_reshapes=[2], resolutions=[[128, 32, 128]] * 3
    )
    do = {
        "mpd": disc.MultiPeriodDiscriminator(h).state_dict(),
        "mrd": disc.MultiResolutionDiscriminator(h).state_dict(),
    }
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(Adversarial(bigvgan_config()), do)
    message = str(e.value)
    assert "\n" not in message and message.startswith("checkpoint: this is a BigVGAN checkpoint (MPD x1 + unknown x3)")
    assert message.endswith(
        "no preset or options here fit it: it holds BigVGAN-v1's MRD (UnivNet's, on magnitude spectrograms), which has no kind here"
    )


# --- audiocraft: MultiScaleSTFTDiscriminator inside AdversarialLoss (adversary.* + optimizer) -----------------

MSSTFTD = dict(filters=4, n_ffts=[256, 512, 128], hop_lengths=[64, 128, 32], win_lengths=[256, 400, 128])


def encodec_config(**more):
    return AdversarialConfig(preset="encodec", discriminators=[{"kind": "msstftd", "options": MSSTFTD}], **more)


@pytest.fixture(scope="module")
def audiocraft_loss():
    msstftd = anchor("audiocraft.adversarial.discriminators.msstftd")
    flashy = __import__("sys").modules["flashy"]
    flashy.distrib = types.SimpleNamespace(broadcast_model=lambda m: None, eager_sync_model=lambda m: nullcontext())
    flashy.utils = types.SimpleNamespace(readonly=lambda m: nullcontext())
    losses = anchor("audiocraft.adversarial.losses")
    torch.manual_seed(0)
    theirs = msstftd.MultiScaleSTFTDiscriminator(**MSSTFTD, activation_params={"negative_slope": 0.3})
    signal_carrying(theirs, 6)
    optimizer = torch.optim.Adam(theirs.parameters(), 3e-4, betas=(0.5, 0.9))
    hinge = dict(
        loss=losses.get_adv_criterion("hinge"),
        loss_real=losses.get_real_criterion("hinge"),
        loss_fake=losses.get_fake_criterion("hinge"),
    )
    adv = losses.AdversarialLoss(theirs, optimizer, **hinge)
    fake, real = waves(seed=7)
    adv.train_adv(fake, real)  # its own D step: the optimizer's state is its own
    return adv, losses, msstftd, hinge


def test_audiocraft_adversarial_loss_state_resumes(audiocraft_loss):
    adv, *_ = audiocraft_loss
    for source in (adv.state_dict(), {"adv_losses": {f"msstftd.{k}": v for k, v in adv.state_dict().items()}}):
        ours = Adversarial(encodec_config())
        assert load_anchor_checkpoint(ours, source, resume=True) == "audiocraft"
        x, _ = waves(seed=8)
        with torch.no_grad():
            logits, _ = adv.adversary(x)
            for i, (sub, lg) in enumerate(zip(ours.judge(x)[0], logits)):
                assert_close(sub.logits, lg, f"msstftd[{i}]")
        for a, b in zip(states_by_param(adv.optimizer), states_by_param(ours.optimizer)):
            assert_same_state(a, b, "audiocraft optimizer")
        assert int(ours.updates) == 1


def test_audiocraft_export_loads_into_adversarial_loss_strictly(audiocraft_loss):
    adv, losses, msstftd, hinge = audiocraft_loss
    ours = Adversarial(encodec_config())
    load_anchor_checkpoint(ours, adv.state_dict(), resume=True)
    files = export_anchor_checkpoint(ours, "audiocraft")
    fresh = msstftd.MultiScaleSTFTDiscriminator(**MSSTFTD, activation_params={"negative_slope": 0.3})
    loss = losses.AdversarialLoss(fresh, torch.optim.Adam(fresh.parameters(), 3e-4), **hinge)
    loss.load_state_dict(dict(files["msstftd.th"]), strict=True)
    x, _ = waves(seed=9)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(fresh(x)[0], adv.adversary(x)[0]))
    for a, b in zip(states_by_param(adv.optimizer), states_by_param(loss.optimizer)):
        assert_same_state(a, b, "audiocraft optimizer out")
    assert_round_trip(ours, encodec_config(), files, "msstftd.th")


# --- Vocos: the Lightning checkpoint (state_dict, optimizer_states, lr_schedulers) --------------------------------


def vocos_config(**more):
    return AdversarialConfig(
        preset="vocos",
        discriminators=[
            {"kind": "mpd", "options": {"periods": [5]}},
            {"kind": "mrd", "options": {"fft_sizes": [256, 128]}},
        ],
        **more,
    )


@pytest.fixture(scope="module")
def vocos_ckpt():
    disc = anchor("vocos.discriminators")
    torch.manual_seed(0)
    mpd, mrd = disc.MultiPeriodDiscriminator(periods=(5,)), disc.MultiResolutionDiscriminator(fft_sizes=(256, 128))
    signal_carrying(mpd, 8)
    signal_carrying(mrd, 9)
    # experiment.py's configure_optimizers: D's AdamW over two groups, a cosine LambdaLR stepped per step
    opt_disc = torch.optim.AdamW(
        [{"params": mpd.parameters()}, {"params": mrd.parameters()}], lr=5e-4, betas=(0.8, 0.9)
    )
    cosine = torch.optim.lr_scheduler.LambdaLR(opt_disc, lambda step: 0.5 * (1 + math.cos(math.pi * step / 1_000_000)))
    for step in range(3):
        adam_steps(opt_disc, 1, seed=step)
        cosine.step()
    generator = nn.Linear(2, 2)
    state = {
        **{f"multiperioddisc.{k}": v for k, v in mpd.state_dict().items()},
        **{f"multiresddisc.{k}": v for k, v in mrd.state_dict().items()},
        **{f"backbone.{k}": v for k, v in generator.state_dict().items()},  # the generator's, left alone
    }
    opt_gen = torch.optim.AdamW(generator.parameters(), 5e-4)
    ckpt = {
        "state_dict": state,
        "optimizer_states": [opt_disc.state_dict(), opt_gen.state_dict()],
        "lr_schedulers": [cosine.state_dict()],
        "global_step": 6,
        "epoch": 0,
    }
    return mpd, mrd, opt_disc, cosine, ckpt


def test_vocos_lightning_checkpoint_resumes(vocos_ckpt, tmp_path):
    mpd, mrd, opt_disc, cosine, ckpt = vocos_ckpt
    torch.save(ckpt, tmp_path / "last.ckpt")
    ours = Adversarial(vocos_config(init="resume", init_from=str(tmp_path / "last.ckpt")))
    real, fake = waves(n=2999, seed=10)
    with torch.no_grad():
        got = ours.judge(fake)
        for k, theirs in enumerate((mpd, mrd)):
            _, logits, _, _ = theirs(y=real[:, 0], y_hat=fake[:, 0])
            for i, lg in enumerate(logits):
                assert_close(got[k][i].logits.reshape(lg.shape), lg, f"vocos[{k}][{i}]")
    for a, b in zip(states_by_param(opt_disc), states_by_param(ours.optimizer)):
        assert_same_state(a, b, "vocos optimizer")  # its two groups, [mpd] then [mrd], are our one
    assert int(ours.updates) == 3 and ours.scheduler.last_epoch == cosine.last_epoch == 3
    assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(opt_disc.param_groups[0]["lr"])


def test_vocos_export_loads_into_its_classes_and_round_trips(vocos_ckpt):
    mpd, mrd, opt_disc, cosine, ckpt = vocos_ckpt
    disc = anchor("vocos.discriminators")
    ours = Adversarial(vocos_config())
    load_anchor_checkpoint(ours, ckpt, resume=True)
    files = export_anchor_checkpoint(ours, "vocos")
    out = files["discriminators.ckpt"]
    fresh_mpd, fresh_mrd = (
        disc.MultiPeriodDiscriminator(periods=(5,)),
        disc.MultiResolutionDiscriminator(fft_sizes=(256, 128)),
    )
    for prefix, module in (("multiperioddisc.", fresh_mpd), ("multiresddisc.", fresh_mrd)):
        module.load_state_dict(
            {k[len(prefix) :]: v for k, v in out["state_dict"].items() if k.startswith(prefix)}, strict=True
        )
    reloaded = torch.optim.AdamW([{"params": fresh_mpd.parameters()}, {"params": fresh_mrd.parameters()}], lr=5e-4)
    reloaded.load_state_dict(out["optimizer_states"][0])
    for a, b in zip(states_by_param(opt_disc), states_by_param(reloaded)):
        assert_same_state(a, b, "vocos optimizer out")
    schedule = torch.optim.lr_scheduler.LambdaLR(reloaded, lambda step: 1.0)
    schedule.load_state_dict(out["lr_schedulers"][0])
    assert schedule.last_epoch == 3
    assert_round_trip(ours, vocos_config(), files, "discriminators.ckpt")


# --- what does not fit, what is not a checkpoint --------------------------------------------------------------


def test_a_file_from_another_anchor_is_named_with_what_would_fit(bigvgan_do):
    *_, do = bigvgan_do
    dac = Adversarial(AdversarialConfig(preset="dac", width=1 / 16))
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(dac, do, what="init_from = 'do_00000002'")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(
        "init_from = 'do_00000002': this is a BigVGAN checkpoint (MPD x5 + MS-SB-CQTD x3), not a DAC one as preset = 'dac' reads; it does not fit the configured discriminators: "
    )
    assert "missing " in message and "unexpected " in message and "(" in message
    assert "; preset = 'bigvgan_v2'" in message and message.endswith("fits it")
    assert "discriminators[1].options.filters = 4" in message


@pytest.mark.parametrize("case", ["dac", "hifigan", "bigvgan", "audiocraft", "vocos"])
def test_the_options_a_mismatch_names_take_the_file(case, request):
    """The config the message proposes builds a discriminator that loads the file."""
    source = {
        "dac": lambda: request.getfixturevalue("dac_run")[0].state_dict(),
        "hifigan": lambda: request.getfixturevalue("hifigan_do")[4],
        "bigvgan": lambda: request.getfixturevalue("bigvgan_do")[3],
        "audiocraft": lambda: request.getfixturevalue("audiocraft_loss")[0].state_dict(),
        "vocos": lambda: request.getfixturevalue("vocos_ckpt")[4],
    }[case]()
    hint = suggest(detect(source, "checkpoint"))
    assert hint.config is not None, hint.text
    ours = Adversarial(AdversarialConfig(**hint.config))
    assert load_anchor_checkpoint(ours, source) == case


def test_resume_from_a_file_without_optimizer_state_is_refused(dac_run):
    theirs, *_ = dac_run
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(Adversarial(dac_config()), theirs.state_dict(), resume=True)
    assert str(e.value) == (
        "checkpoint: init = 'resume' needs D's optimizer state, and this DAC checkpoint holds none (optimizer.pth "
        "beside weights.pth): use init = 'weights_only'"
    )


def test_a_forced_format_that_is_not_the_files_says_so(dac_run):
    theirs, *_ = dac_run
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(Adversarial(dac_config()), theirs.state_dict(), format="vocos")
    assert str(e.value).startswith(
        "checkpoint: not a Vocos checkpoint; its top-level keys: discriminators.0.convs.0.0.bias"
    )


def test_random_bytes_get_one_line_in_check_and_at_build(tmp_path):
    path = tmp_path / "pre.pt"
    path.write_bytes(os.urandom(4096).replace(b"PK", b"pk").replace(b"\x80", b"\x81"))
    with pytest.raises(InvalidConfig) as e:
        AdversarialConfig(preset="dac", init="weights_only", init_from=str(path))
    assert str(e.value) == f"init_from: {str(path)!r} is not a checkpoint (neither torch's zip format nor a pickle)"
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(Adversarial(dac_config()), path)
    assert str(e.value) == f"init_from: {str(path)!r} is not a checkpoint (neither torch's zip format nor a pickle)"
    zipped = tmp_path / "zipped.pt"  # the zip header, then garbage: torch.load's error, cut to one line
    zipped.write_bytes(b"PK\x03\x04" + os.urandom(2048))
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(Adversarial(dac_config()), zipped)
    assert str(e.value) == (
        f"init_from: {str(zipped)!r} is not a checkpoint (torch.load: PytorchStreamReader failed reading zip archive: "
        f"failed finding central directory)"
    )
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value) and len(str(e.value)) < 300


def test_a_pickle_that_needs_objects_is_refused_not_run(tmp_path, dac_run):
    theirs, *_ = dac_run
    path = tmp_path / "do_00000001"
    torch.save({"mpd": theirs.state_dict(), "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(StateMismatch) as e:
        load_anchor_checkpoint(Adversarial(dac_config()), path)
    assert str(e.value) == (
        f"init_from: {str(path)!r} needs pickled objects to load (argparse.Namespace); refused, a "
        f"pickle is never executed here: save the state dicts alone (module.state_dict(), optimizer.state_dict())"
    )


def test_init_from_without_init_and_a_missing_file_are_config_problems(tmp_path):
    with pytest.raises(InvalidConfig) as e:
        AdversarialConfig(init_from=str(tmp_path / "pre.pt"))
    assert "init = 'fresh' starts D at random" in str(e.value)
    with pytest.raises(InvalidConfig) as e:
        AdversarialConfig(init="resume", init_from=str(tmp_path / "pre.pt"))
    assert str(e.value) == f"init_from: no such file or folder: {str(tmp_path / 'pre.pt')!r}"
