"""Train the small embedded text-to-image model on the procedural scene world.

The model is a standard diffusers ``StableDiffusionPipeline``, so it runs
through exactly the code path of real checkpoints (cross-attention capture
included):

- ``AutoencoderKL`` with two 2x downsamplings (64x64x3 pictures <-> 16x16x8
  latents), trained first to near-identity on scene pictures (phase ``vae``);
- ``UNet2DConditionModel`` on the latents, cross-attention at 16x16 and 8x8 and
  in the 4x4 middle block, trained with the text encoder (phase ``unet``) on the
  usual epsilon objective, captions dropped with probability ``caption_dropout``
  (replaced by "", the pipeline's unconditional prompt) so that
  classifier-free guidance works;
- ``CLIPTextModel`` with the project's offline CLIP tokenizer, by default with
  no transformer layers (token + position embeddings and the final layer norm):
  the limit of CLIP's causal attention, where no token, the padding included,
  carries another word. A jointly trained encoder with layers learns to pack the
  caption into the padding, which every pixel then reads alike, and the words'
  own maps stay flat (``ModelSpec.text_layers``);
- a DDPM training schedule (SD's scaled-linear betas) and a DPM-Solver++
  scheduler for sampling.

The defaults are the shipped model's recipe (``daamset train-embedded --out DIR
--threads 2 --ship`` reproduces ``pipeline/assets/embedded``; about 1.5 hours on
2 CPU cores). ``--ship`` copies the result in float16 to the embedded model's
folder (``ship_model``).

Everything is derived from ``seed``: the initial weights, and the batch, noise
and timesteps of step ``t`` (seeded by ``(seed, phase, t)``), so a run that is
stopped and resumed from its checkpoint follows the same trajectory as one that
never stopped. Output folder::

    OUT/model/           the pipeline (save_pretrained; StableDiffusionPipeline.from_pretrained(OUT/model))
    OUT/loss.jsonl       one line per logged step: phase, step, loss, lr, seconds
    OUT/checkpoint.pt    weights, optimiser and EMA state of the last checkpoint (for resume)
    OUT/training.json    the arguments of the run
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from pipeline.atomic import atomic_path, write_json
from pipeline.clip_tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, clip_tokenizer
from pipeline.scenes import IMAGE_SIZE, Scene, scene_batch

__all__ = [
    "ModelSpec",
    "build_components",
    "build_pipeline",
    "train_embedded",
    "read_loss_log",
    "ship_model",
    "train_from_args",
]

log = logging.getLogger(__name__)

_PHASE_CODE = {"vae": 1, "unet": 2, "scale": 3}
_BOS, _EOS = VOCAB_SIZE - 2, VOCAB_SIZE - 1


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of the embedded model (the defaults: ~6M U-Net parameters, ~13 MB in float16)."""

    image_size: int = IMAGE_SIZE
    vae_channels: tuple[int, ...] = (16, 32, 32)  # two 2x downsamplings: 64x64x3 <-> 16x16x8
    latent_channels: int = 8  # more than SD's 4 so that 4x downsampling still keeps thin parts
    unet_channels: tuple[int, ...] = (64, 128, 128)
    # cross-attention at the 16x16 and 8x8 levels (DAAM's maps), none at 4x4 (as SD has none at its lowest)
    unet_cross_attention: tuple[bool, ...] = (True, True, False)
    unet_layers_per_block: int = 1
    norm_groups: int = 32
    attention_heads: int = 4
    text_hidden: int = 64
    # no transformer layers: each token's state is its own (embedding + position), so the
    # padding tokens carry no caption. With 3 jointly trained causal layers the padding
    # (which sees the whole caption) took 80-88% of cross-attention, flat over the image,
    # and the words' DAAM maps stayed flat (measured at step 1000 of this recipe).
    text_layers: int = 0
    text_heads: int = 4

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)


def build_components(spec: ModelSpec, seed: int) -> tuple[AutoencoderKL, UNet2DConditionModel, CLIPTextModel]:
    """Freshly initialised VAE, U-Net and text encoder; the same ``seed`` gives the same weights."""
    torch.manual_seed(seed)
    n_vae = len(spec.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae,
        block_out_channels=spec.vae_channels,
        layers_per_block=1,
        latent_channels=spec.latent_channels,
        norm_num_groups=min(32, spec.vae_channels[0]),
        sample_size=spec.image_size,
        # no self-attention at 32x32: it would dominate CPU time and flat shapes do not need it
        mid_block_add_attention=False,
    )
    if len(spec.unet_cross_attention) != len(spec.unet_channels):
        raise ValueError(f"unet_cross_attention needs one flag per level of unet_channels {spec.unet_channels}")
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in spec.unet_cross_attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(spec.unet_cross_attention))
    unet = UNet2DConditionModel(
        sample_size=spec.latent_size,
        in_channels=spec.latent_channels,
        out_channels=spec.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=spec.unet_channels,
        layers_per_block=spec.unet_layers_per_block,
        cross_attention_dim=spec.text_hidden,
        attention_head_dim=spec.attention_heads,  # diffusers' legacy name: this is the number of heads
        norm_num_groups=spec.norm_groups,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=spec.text_hidden,
            intermediate_size=4 * spec.text_hidden,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.text_heads,
            max_position_embeddings=MODEL_MAX_LENGTH,
            bos_token_id=_BOS,
            eos_token_id=_EOS,
            pad_token_id=_EOS,
            hidden_act="quick_gelu",
        )
    )
    return vae, unet, text_encoder


def _train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="epsilon"
    )


def build_pipeline(vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder: CLIPTextModel) -> StableDiffusionPipeline:
    """Assemble a sampling pipeline (DPM-Solver++, no safety checker) from trained parts."""
    # steps_offset=1 as in SD's scheduler configs (diffusers warns on 0)
    scheduler = DPMSolverMultistepScheduler.from_config(_train_scheduler().config, steps_offset=1)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# ----------------------------------------------------------------------- data


def _images(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 pictures (B, H, W, 3) as a (B, 3, H, W) float batch in [-1, 1], as the VAE expects."""
    x = torch.as_tensor(images).to(device).float() / 127.5 - 1.0
    return x.permute(0, 3, 1, 2).contiguous()


def _batch(seed: int, phase: str, step: int, batch_size: int) -> list[Scene]:
    return scene_batch((seed, _PHASE_CODE[phase], step), batch_size, split="train")


class _StepBatches(torch.utils.data.Dataset):
    """Item ``t``: the pictures (uint8, B x H x W x 3) and captions of step ``t``.

    A pure function of (seed, phase, t), so DataLoader workers can render
    batches ahead of the accelerator without changing what any step sees.
    """

    def __init__(self, seed: int, phase: str, batch_size: int, steps: int) -> None:
        self.seed, self.phase, self.batch_size, self.steps = seed, phase, batch_size, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[np.ndarray, list[str]]:
        scenes = _batch(self.seed, self.phase, step, self.batch_size)
        return np.stack([s.image for s in scenes]), [s.caption for s in scenes]


def _batches(seed: int, phase: str, batch_size: int, start: int, steps: int, workers: int) -> torch.utils.data.DataLoader:
    extra = {"prefetch_factor": 4} if workers > 0 else {}
    return torch.utils.data.DataLoader(
        _StepBatches(seed, phase, batch_size, steps),
        batch_size=None,  # items are whole batches
        sampler=range(start, steps),
        num_workers=workers,
        **extra,
    )


def _step_generator(seed: int, phase: str, step: int) -> torch.Generator:
    # noise and timesteps are drawn on the CPU so that CPU and GPU runs see the same numbers
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, _PHASE_CODE[phase], step]).generate_state(1)[0]))
    return g


# ------------------------------------------------------------------------ EMA


class _EMA:
    """Exponential moving average of parameters, warmed up as (1 + t) / (10 + t)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, params: list[torch.nn.Parameter], step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copy_to(self, params: list[torch.nn.Parameter]) -> None:
        for s, p in zip(self.shadow, params):
            p.copy_(s)


# ------------------------------------------------------------------ training


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _lr_at(step: int, lr: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def read_loss_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of ``OUT/loss.jsonl`` (an empty list if there is none)."""
    path = Path(out_dir) / "loss.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _truncate_log(out_dir: Path, phase: str, step: int) -> None:
    """Drop log lines written after the checkpoint that a resumed run restarts from."""
    order = {"vae": 0, "unet": 1}
    kept = [e for e in read_loss_log(out_dir) if (order[e["phase"]], e["step"]) < (order[phase], step)]
    text = "".join(json.dumps(e) + "\n" for e in kept)
    with atomic_path(out_dir / "loss.jsonl") as tmp:
        tmp.write_text(text, encoding="utf-8")


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_embedded(
    out_dir: str | Path,
    *,
    steps: int = 3000,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "auto",
    lr: float = 1e-3,
    vae_steps: int = 600,
    vae_batch_size: int = 16,
    vae_lr: float = 1e-3,
    caption_dropout: float = 0.1,
    warmup: int = 200,
    ema_decay: float = 0.999,
    checkpoint_every: int = 500,
    log_every: int = 10,
    resume: bool = True,
    threads: int | None = None,
    workers: int = 0,
    spec: ModelSpec | None = None,
    progress: bool = True,
) -> Path:
    """Train the embedded model into ``out_dir`` and return the pipeline folder ``out_dir/model``.

    Phase ``vae`` trains the autoencoder for ``vae_steps`` steps, then its
    latent scaling factor is set to 1 / std of scene latents (as SD's was);
    phase ``unet`` trains U-Net and text encoder for ``steps`` steps with the
    VAE frozen. With ``resume`` a checkpoint in ``out_dir`` is continued;
    otherwise it is an error to train into a folder that already has one. A
    resumed run must use the same arguments, except ``steps`` (to extend or
    shorten it; the cosine learning-rate schedule then follows the new total).
    ``threads`` sets torch's CPU threads (on a shared 2-core machine one thread
    was faster than two); ``workers`` > 0 renders scene batches in that many
    DataLoader processes ahead of the model (worth it on a GPU; the batches are
    the same either way).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec or ModelSpec()
    if threads is not None:
        torch.set_num_threads(threads)
    dev = _resolve_device(device)
    if not 0.0 <= caption_dropout < 1.0:
        raise ValueError(f"caption_dropout must be in [0, 1), got {caption_dropout}")
    args = {
        "steps": steps, "batch_size": batch_size, "seed": seed, "lr": lr, "vae_steps": vae_steps,
        "vae_batch_size": vae_batch_size, "vae_lr": vae_lr, "caption_dropout": caption_dropout,
        "warmup": warmup, "ema_decay": ema_decay, "spec": asdict(spec),
    }  # fmt: skip
    args = json.loads(json.dumps(args))  # the form it has after a round trip through the checkpoint
    ckpt_path = out / "checkpoint.pt"
    vae, unet, text_encoder = build_components(spec, seed)
    vae.to(dev)
    unet.to(dev)
    text_encoder.to(dev)
    tokenizer = clip_tokenizer()
    train_params = [*unet.parameters(), *text_encoder.parameters()]
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=vae_lr, weight_decay=0.0)
    opt = torch.optim.AdamW(train_params, lr=lr, weight_decay=1e-2)
    ema = _EMA(train_params, ema_decay)
    phase, start = "vae", 0

    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"{ckpt_path} exists; pass resume=True to continue it or choose another folder")
        state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        # ``steps`` may change (to extend or shorten a run); anything else would mix two trainings
        same = {k: v for k, v in state["args"].items() if k != "steps"} == {k: v for k, v in args.items() if k != "steps"}
        if not same:
            raise ValueError(f"{ckpt_path} was made with other arguments: {state['args']} (now {args})")
        if state["args"]["steps"] != steps:
            log.warning("resuming with steps=%d instead of %d: the learning-rate schedule changes from here",
                        steps, state["args"]["steps"])  # fmt: skip
        vae.load_state_dict(state["vae"])
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        vae_opt.load_state_dict(state["vae_opt"])
        opt.load_state_dict(state["opt"])
        ema.shadow = [t.to(dev) for t in state["ema"]]
        vae.register_to_config(scaling_factor=state["scaling_factor"])
        phase, start = state["phase"], state["step"]
        log.info("resuming %s at phase %s step %d", ckpt_path, phase, start)
    else:
        (out / "loss.jsonl").unlink(missing_ok=True)
    _truncate_log(out, phase, start)
    write_json(out / "training.json", args, indent=2)

    def checkpoint(at_phase: str, at_step: int) -> None:
        _save_checkpoint(ckpt_path, {
            "args": args, "phase": at_phase, "step": at_step, "scaling_factor": float(vae.config.scaling_factor),
            "vae": vae.state_dict(), "unet": unet.state_dict(), "text_encoder": text_encoder.state_dict(),
            "vae_opt": vae_opt.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow,
        })  # fmt: skip

    logfile = (out / "loss.jsonl").open("a", encoding="utf-8")
    try:
        if phase == "vae":
            _train_vae(vae, vae_opt, seed, start, vae_steps, vae_batch_size, vae_lr, dev, logfile, log_every,
                       checkpoint_every, checkpoint, progress, workers)  # fmt: skip
            vae.register_to_config(scaling_factor=_latent_scale(vae, seed, dev))
            log.info("VAE latent scaling factor %.4f", vae.config.scaling_factor)
            phase, start = "unet", 0
            checkpoint(phase, start)
        _train_unet(vae, unet, text_encoder, tokenizer, opt, ema, train_params, seed, start, steps, batch_size, lr,
                    warmup, caption_dropout, dev, logfile, log_every, checkpoint_every, checkpoint, progress,
                    workers)  # fmt: skip
    finally:
        logfile.close()

    ema.copy_to(train_params)  # ship the averaged weights
    pipe = build_pipeline(vae.cpu().eval(), unet.cpu().eval(), text_encoder.cpu().eval())
    model_dir = out / "model"
    pipe.save_pretrained(model_dir, safe_serialization=True)
    return model_dir


def _log(logfile: Any, entry: dict[str, Any]) -> None:
    logfile.write(json.dumps(entry) + "\n")
    logfile.flush()


def _train_vae(vae, opt, seed, start, steps, batch_size, lr, dev, logfile, log_every, ckpt_every, checkpoint, progress,
               workers) -> None:  # noqa: ANN001
    vae.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, steps), desc="vae", disable=not progress, initial=start, total=steps)
    for step, (images, _) in zip(bar, _batches(seed, "vae", batch_size, start, steps, workers)):
        x = _images(images, dev)
        g = _step_generator(seed, "vae", step)
        posterior = vae.encode(x).latent_dist
        eps = torch.randn(posterior.mean.shape, generator=g).to(dev)
        z = posterior.mean + posterior.std * eps
        recon = vae.decode(z).sample
        mse = F.mse_loss(recon, x)
        kl = posterior.kl().mean() / z[0].numel()
        loss = mse + 1e-4 * kl
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, lr, 50, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            _log(logfile, {"phase": "vae", "step": step, "loss": loss.item(), "mse": mse.item(), "kl": kl.item(),
                           "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
            bar.set_postfix(mse=f"{mse.item():.4f}")
        if (step + 1) % ckpt_every == 0:
            checkpoint("vae", step + 1)
    vae.eval()
    vae.requires_grad_(False)


@torch.no_grad()
def _latent_scale(vae: AutoencoderKL, seed: int, dev: torch.device, n: int = 256) -> float:
    """1 / std of scene latents, so that the diffusion sees unit-variance latents (SD's 0.18215)."""
    x = _images(np.stack([s.image for s in _batch(seed, "scale", 0, n)]), dev)
    z = vae.encode(x).latent_dist.mean
    return float(1.0 / z.std().clamp_min(1e-6))


def _encode_text(tokenizer, text_encoder, captions: list[str], dev: torch.device) -> torch.Tensor:  # noqa: ANN001
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids  # fmt: skip
    return text_encoder(ids.to(dev))[0]


def _train_unet(vae, unet, text_encoder, tokenizer, opt, ema, params, seed, start, steps, batch_size, lr, warmup,
                caption_dropout, dev, logfile, log_every, ckpt_every, checkpoint, progress, workers) -> None:  # noqa: ANN001
    noise_scheduler = _train_scheduler()
    alphas = noise_scheduler.alphas_cumprod.to(dev)
    vae.eval()
    vae.requires_grad_(False)
    unet.train()
    text_encoder.train()
    scale = float(vae.config.scaling_factor)
    t0 = time.perf_counter()
    bar = tqdm(range(start, steps), desc="unet", disable=not progress, initial=start, total=steps)
    for step, (images, captions) in zip(bar, _batches(seed, "unet", batch_size, start, steps, workers)):
        g = _step_generator(seed, "unet", step)
        drop = torch.rand(len(captions), generator=g) < caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        with torch.no_grad():
            posterior = vae.encode(_images(images, dev)).latent_dist
            latents = (posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g).to(dev)) * scale
        noise = torch.randn(latents.shape, generator=g).to(dev)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(captions),), generator=g).to(dev)
        a = alphas[timesteps].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        hidden = _encode_text(tokenizer, text_encoder, captions, dev)
        pred = unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        loss = F.mse_loss(pred, noise)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, lr, warmup, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(params, step)
        if step % log_every == 0 or step == steps - 1:
            _log(logfile, {"phase": "unet", "step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"],
                           "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % ckpt_every == 0:
            checkpoint("unet", step + 1)
    checkpoint("unet", steps)


# -------------------------------------------------------------------- shipping


def ship_model(out_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Copy the trained pipeline ``out_dir/model`` to ``dest`` in float16 (what the repository ships).

    ``dest`` defaults to the embedded model's folder (``pipeline.models.EMBEDDED_DIR``).
    The folder is replaced whole, at the last moment, and gets ``training.json``
    (the run's arguments and the loss at both ends) beside the weights.
    """
    import shutil
    import tempfile

    from pipeline.models import EMBEDDED_DIR, load_pipeline

    out = Path(out_dir)
    dest = Path(dest) if dest is not None else EMBEDDED_DIR
    pipe = load_pipeline(str(out / "model"), dtype="float16", device="cpu")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    old = dest.with_name(f".{dest.name}.old")
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        unet_log = [e for e in read_loss_log(out) if e["phase"] == "unet"]
        provenance = json.loads((out / "training.json").read_text(encoding="utf-8"))
        if unet_log:
            provenance["unet_loss"] = {"first": unet_log[0], "last": unet_log[-1]}
        write_json(tmp / "training.json", provenance, indent=2)
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return dest


# ---------------------------------------------------------------- command line


def train_from_args(args: argparse.Namespace) -> Path:
    """Run ``train_embedded`` with the options of ``pipeline.cli_train``; log the loss at both ends."""
    model = train_embedded(
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        vae_steps=args.vae_steps,
        vae_batch_size=args.vae_batch_size,
        lr=args.lr,
        warmup=args.warmup,
        caption_dropout=args.caption_dropout,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        workers=args.workers,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
        spec=ModelSpec(unet_channels=tuple(args.unet_channels)) if args.unet_channels else ModelSpec(),
    )
    if args.ship is not None:
        log.info("shipped float16 weights to %s", ship_model(args.out, args.ship or None))
    entries = [e for e in read_loss_log(args.out) if e["phase"] == "unet"]
    if entries:
        log.info("model saved to %s; U-Net loss %.4f (step %d) -> %.4f (step %d)",
                 model, entries[0]["loss"], entries[0]["step"], entries[-1]["loss"], entries[-1]["step"])  # fmt: skip
    return model
