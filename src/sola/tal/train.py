"""Training of the TAL head: AdamW, linear warm-up then cosine, gradient clipping, model EMA.

Each iteration draws `batch_size` items, cuts a random training window from each
(`random_truncate`), pads them into one `(B, T, C)` batch, assigns targets to every pyramid point
and minimises focal + DIoU loss. The returned model is the EMA copy (what ActionFormer evaluates).

With a `state_dir`, the state after every epoch (model, EMA, AdamW moments, loss normaliser,
step, RNG streams, log) is written atomically to `state_dir/state.safetensors`, and
`resume=True` continues from it: on the CPU the resumed run is bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sola.core.config import changed_config_keys, check_seed
from sola.core.distributed import barrier, rank_batch, setup_distributed, sum_across_ranks
from sola.core.errors import AnnotationError, CheckpointError
from sola.core.runs import STATE, load_state, save_state
from sola.tal.assignment import assign_targets
from sola.tal.config import TalConfig
from sola.tal.data import check_item, load_features, pad_batch, random_truncate, resize_item
from sola.tal.losses import LossNormalizer, detection_loss
from sola.tal.model import TalModel, make_points

STATE_FORMAT = "sola-tal-train-state-1"
STATE_FIX = "delete it to train from scratch, or choose another run directory"


@dataclass
class TrainResult:
    """What `train_head` returns: the evaluation model (EMA) and the per-epoch log."""

    model: TalModel
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_epochs: int = 0  # epochs restored from a training state rather than trained in this call

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall-clock seconds of one training epoch."""
        return float(np.mean([h["seconds"] for h in self.history])) if self.history else 0.0


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return the NumPy generator used for sampling and cropping.

    Raises `ConfigError` for a seed outside [0, 2**32 - 1] (what all three take)."""
    check_seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weights of convs and linears decay; biases, LayerNorms and scales do not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim > 1 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(step: int, warmup_steps: int, total_steps: int, base_lr: float, min_lr: float = 1e-8) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine from `base_lr` to `min_lr` at `total_steps`."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for every parameter and floating buffer."""
    for ema_value, value in zip(ema.state_dict().values(), model.state_dict().values()):
        if ema_value.dtype.is_floating_point:
            ema_value.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
        else:
            ema_value.copy_(value)


def batch_targets(items: list[dict[str, Any]], length: int, config: TalConfig,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of a padded batch: cls (B, P, K) and reg (B, P, 2) for an input of `length` snippets."""
    points = make_points(length, config, device=device)
    cls, reg = [], []
    for item in items:  # one vectorised assignment per video
        c, r = assign_targets(points, item["segments"].to(device), item["labels"].to(device),
                              config.data.num_classes, config.train.center_sample_radius)
        cls.append(c)
        reg.append(r)
    return torch.stack(cls), torch.stack(reg)


def run_fingerprint(items: list[dict[str, Any]], config: TalConfig, seed: int) -> dict[str, Any]:
    """What a resumed run must share with the saved one: config (device aside), seed and training videos."""
    settings = config.to_dict()
    for key in ("device", "num_workers"):  # a run may move between machines
        settings["train"].pop(key, None)
    videos = hashlib.sha256("\n".join(str(item.get("video_id", i)) for i, item in enumerate(items)).encode())
    # through JSON, so that it compares equal to the saved one (tuples become lists)
    return json.loads(json.dumps({"config": settings, "seed": seed, "videos": videos.hexdigest()}))


def save_train_state(path: str | os.PathLike, epoch: int, step: int, modules: dict[str, nn.Module | None],
                     optimizer: torch.optim.Optimizer, normalizer: LossNormalizer, rng: np.random.Generator,
                     history: list[dict[str, float]], fingerprint: dict[str, Any]) -> None:
    """Write the state after `epoch` finished epochs to one safetensors file, atomically (no pickle).

    Tensors: `{name}.{key}` for each module's state_dict, the AdamW moments (`optim.*`) and the torch
    RNG states as uint8 (`rng.torch`, `rng.cuda.N`); the JSON metadata `state` holds the scalars,
    the NumPy and Python RNG states, the log and the fingerprint.
    """
    streams = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        streams.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, internal, gauss = random.getstate()
    info = {"epoch": epoch, "step": step, "loss_norm": normalizer.value, "numpy_rng": rng.bit_generator.state,
            "python_rng": [version, list(internal), gauss], "history": history, "fingerprint": fingerprint}
    save_state(path, STATE_FORMAT, modules, optimizer, info, extra=streams)


def load_train_state(path: str | os.PathLike, modules: dict[str, nn.Module | None],
                     optimizer: torch.optim.Optimizer, normalizer: LossNormalizer, rng: np.random.Generator,
                     fingerprint: dict[str, Any]) -> tuple[int, int, list[dict[str, float]]]:
    """Restore what `save_train_state` wrote (RNG streams included); return (epoch, step, history).

    Raises `CheckpointError` for an unreadable file or one saved with another config, seed or data.
    """

    def same_run(info: dict[str, Any]) -> None:
        saved = info.get("fingerprint") or {}
        if saved == fingerprint:
            return
        changed = [key for key in fingerprint if saved.get(key) != fingerprint[key]]
        keys = changed_config_keys(saved.get("config") or {}, fingerprint["config"]) if "config" in changed else []
        detail = f" ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})" if keys else ""
        raise CheckpointError(f"{path}: the saved run differs in {', '.join(changed)}{detail}; resume with the run's "
                              "own config, seed and data, or choose another run directory")

    info, tensors = load_state(path, STATE_FORMAT, modules, optimizer, STATE_FIX, check=same_run)
    normalizer.value = info["loss_norm"]
    rng.bit_generator.state = info["numpy_rng"]
    version, internal, gauss = info["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return int(info["epoch"]), int(info["step"]), list(info["history"])


def on_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal (False for files, pipes, captured or closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def epoch_line(record: dict[str, float], total_epochs: int, with_aux: bool = False) -> str:
    """One line of the per-epoch log: epoch, mean losses, learning rate at the end of the epoch, seconds."""
    aux = f", aux {record['aux_loss']:.4f}" if with_aux else ""
    return (f"tal train: epoch {record['epoch']}/{total_epochs}  loss {record['loss']:.4f} "
            f"(cls {record['cls_loss']:.4f}, reg {record['reg_loss']:.4f}{aux})  lr {record['lr']:.3g}  "
            f"{record['seconds']:.2f} s")


def _check_start(items: list[dict[str, Any]], config: TalConfig, state_path: Path | None, resume: bool) -> None:
    """Raise `AnnotationError` for no or ill-fitting items, `CheckpointError` for a state without `resume`."""
    if not items:
        raise AnnotationError("no training videos: check data.train_subset against the annotation subsets")
    for item in items:
        check_item(item, config.data.input_dim, config.data.num_classes)
    if state_path is not None and state_path.exists() and not resume:
        raise CheckpointError(f"{state_path}: a training state exists; pass resume=True to continue it "
                              "or choose another state_dir")


def _epoch_record(sums: dict[str, float], context, steps_per_epoch: int, epoch: int, started: float, optimizer,
                  batch_size: int) -> dict:
    """The log line of one epoch: the global batch's mean losses, seconds, lr, world size, per-rank batch."""
    if context.device.type == "cuda":
        torch.cuda.synchronize(context.device)
    # the global batch's losses: every rank's share is normalised by the global positive count
    record = {key: sum_across_ranks(value, context) / steps_per_epoch for key, value in sums.items()}
    record["aux_loss"] /= context.world_size  # a mean over ranks (each rank's is a mean already)
    record.update(epoch=epoch, seconds=time.perf_counter() - started, lr=optimizer.param_groups[0]["lr"],
                  world_size=context.world_size, rank_batch=batch_size // context.world_size)
    return record


def train_head(items: list[dict[str, Any]], config: TalConfig, seed: int | None = None,
               progress: bool | None = None, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
               model: TalModel | None = None, adapter: nn.Module | None = None,
               auxiliary: nn.Module | None = None, auxiliary_weight: float = 1.0,
               state_dir: str | os.PathLike | None = None, resume: bool = False) -> TrainResult:
    """Train a TAL head on items (see `sola.tal.data`); return the EMA model and the per-epoch log.

    Runs `warmup_epochs + epochs` epochs of `len(items) // batch_size` iterations on
    `train.device`. `adapter` ((B, T, C) -> (B, T, C)) is placed in front of the head and trained
    with it; `auxiliary(feats (B, T, C), mask (B, T)) -> scalar` is added to the loss with
    `auxiliary_weight` (its own parameters are optimised too).

    With `state_dir`, the training state is written to `state_dir/state.safetensors` after
    every epoch; with `resume=True` an existing state is continued (a finished one returns at once,
    untrained; none yet: start from scratch). Raises `AnnotationError` for items that do not fit the
    config, `CheckpointError` for a state that exists without `resume` or does not match the run.

    `progress`: None (default) shows a tqdm bar when stderr is a terminal and otherwise prints one line
    per epoch to stderr (epoch, losses, learning rate, seconds: see `epoch_line`); True always shows the
    bar; False prints nothing.
    """
    d, t = config.data, config.train
    seed = t.seed if seed is None else seed
    state_path = None if state_dir is None else Path(state_dir) / STATE
    _check_start(items, config, state_path, resume)
    context = setup_distributed(t.device)
    rank_batch("train.batch_size", t.batch_size, context)
    rng = seed_everything(seed)
    device = context.device
    if d.resize_to:
        items = [resize_item(item, d.resize_to) for item in items]
    model, ema, auxiliary, optimizer = _build(config, device, model, adapter, auxiliary)
    trainer = _Trainable(model, auxiliary)
    if context.enabled:  # gradients averaged over ranks; every rank sees a disjoint part of each global batch
        trainer = DistributedDataParallel(trainer)
    normalizer = LossNormalizer(t.init_loss_norm, t.loss_norm_momentum)
    steps_per_epoch = max(len(items) // t.batch_size, 1)  # drop the last partial batch, as ActionFormer
    total_epochs = t.warmup_epochs + t.epochs
    total_steps, warmup_steps = total_epochs * steps_per_epoch, t.warmup_epochs * steps_per_epoch
    result = TrainResult(model=ema if ema is not None else model)
    modules = {"model": model, "ema": ema, "auxiliary": auxiliary}
    fingerprint = run_fingerprint(items, config, seed)
    first_epoch = step = 0
    if state_path is not None and state_path.exists():
        first_epoch, step, result.history = load_train_state(state_path, modules, optimizer, normalizer, rng,
                                                             fingerprint)
        result.resumed_epochs = first_epoch
    show_bar = context.is_main and (on_terminal(sys.stderr) if progress is None else bool(progress))
    log_epochs = context.is_main and progress is None and not show_bar
    bar = tqdm(total=total_steps, initial=step, desc="tal train", unit="it", disable=not show_bar)
    for epoch in range(first_epoch, total_epochs):
        model.train()
        started = time.perf_counter()
        plan = [batch[context.rank :: context.world_size] for batch in epoch_batches(items, config, steps_per_epoch, rng)]
        sums = {"loss": 0.0, "cls_loss": 0.0, "reg_loss": 0.0, "aux_loss": 0.0}
        for batch, (feats, mask) in zip(plan, batch_loader(plan, config, device)):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, warmup_steps, total_steps, t.lr)
            losses = _train_step(batch, feats.to(device, non_blocking=True), mask.to(device, non_blocking=True),
                                 config, trainer, auxiliary_weight, optimizer, normalizer, context)
            if ema is not None:
                update_ema(ema, model, t.ema_decay)
            for key in sums:
                sums[key] += float(losses[key].detach())
            step += 1
            bar.update(1)
        record = _epoch_record(sums, context, steps_per_epoch, epoch + 1, started, optimizer, t.batch_size)
        result.history.append(record)
        if state_path is not None and context.is_main:
            save_train_state(state_path, epoch + 1, step, modules, optimizer, normalizer, rng, result.history,
                             fingerprint)
        barrier(context)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        if log_epochs:
            print(epoch_line(record, total_epochs, with_aux=auxiliary is not None), file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
    bar.close()
    result.model.eval()
    return result


def _build(config: TalConfig, device: torch.device, model: TalModel | None, adapter: nn.Module | None,
           auxiliary: nn.Module | None):
    """`(model, EMA copy or None, auxiliary, AdamW)` on `device`; parameters shared by the auxiliary
    loss and the model (the unified adapter) are optimised once."""
    t = config.train
    model = (model or TalModel(config, adapter=adapter)).to(device)
    ema = copy.deepcopy(model).eval() if t.ema_decay > 0 else None
    if ema is not None:
        for param in ema.parameters():
            param.requires_grad_(False)
    groups = parameter_groups(model, t.weight_decay)
    if auxiliary is not None:
        auxiliary = auxiliary.to(device).train()
        known = {id(p) for group in groups for p in group["params"]}
        extra = parameter_groups(auxiliary, t.weight_decay)
        for group, more in zip(groups, extra):
            group["params"] += [p for p in more["params"] if id(p) not in known]
    return model, ema, auxiliary, torch.optim.AdamW(groups, lr=t.lr)


def epoch_batches(items: list[dict[str, Any]], config: TalConfig, steps: int,
                  rng: np.random.Generator) -> list[list[dict[str, Any]]]:
    """The epoch's batches of training windows (`random_truncate` of shuffled items), drawn up front in
    the order one loop would draw them; the features stay unread (lazy items)."""
    d, size = config.data, config.train.batch_size
    order = rng.permutation(len(items))
    return [[random_truncate(items[i], d.max_seq_len, d.trunc_thresh, d.crop_ratio, rng)
             for i in order[step * size : (step + 1) * size]] for step in range(steps)]


class PaddedBatches(torch.utils.data.Dataset):
    """Batch `i` of a plan as padded features `(B, T, C)` and mask `(B, T)` (read here, in a worker if any)."""

    def __init__(self, plan: list[list[dict[str, Any]]], multiple: int) -> None:
        self.plan, self.multiple = plan, multiple

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch([load_features(item["feats"]) for item in self.plan[index]], self.multiple)


def batch_loader(plan: list[list[dict[str, Any]]], config: TalConfig, device: torch.device):
    """A `DataLoader` over the plan's batches, in order: `train.num_workers` processes read ahead
    (-1: none on the CPU, 4 on CUDA), into pinned memory on CUDA."""
    workers = config.train.num_workers
    if workers < 0:
        workers = 4 if device.type == "cuda" else 0
    return torch.utils.data.DataLoader(PaddedBatches(plan, 2 ** config.model.branch_layers), batch_size=None,
                                       shuffle=False, num_workers=workers, pin_memory=device.type == "cuda")


class _Trainable(nn.Module):
    """The head and the auxiliary loss as one module, so that DDP averages the gradients of both."""

    def __init__(self, model: TalModel, auxiliary: nn.Module | None) -> None:
        super().__init__()
        self.model, self.auxiliary = model, auxiliary

    def forward(self, feats: torch.Tensor, mask: torch.Tensor):
        outputs = self.model(feats, mask)
        return outputs, (self.auxiliary(feats, mask) if self.auxiliary is not None else None)


def _train_step(batch: list[dict[str, Any]], feats: torch.Tensor, mask: torch.Tensor, config: TalConfig,
                trainer: nn.Module, auxiliary_weight: float, optimizer: torch.optim.Optimizer,
                normalizer: LossNormalizer, context) -> dict[str, torch.Tensor]:
    """One optimiser step on this rank's part of a batch of (cut) items, with their padded features
    `(B, T, C)` and mask `(B, T)`; returns this rank's losses (the global batch's on one process)."""
    t = config.train
    cls_targets, reg_targets = batch_targets(batch, feats.shape[1], config, context.device)
    outputs, aux_loss = trainer(feats, mask)
    losses = detection_loss(outputs["cls_logits"], outputs["offsets"], outputs["mask"], cls_targets, reg_targets,
                            normalizer, t.focal_alpha, t.focal_gamma, t.loss_weight, t.label_smoothing,
                            total_positive=lambda count: int(sum_across_ranks(count, context)))
    detection = losses["loss"]
    auxiliary = auxiliary_weight * aux_loss if aux_loss is not None else None
    losses["aux_loss"] = aux_loss if aux_loss is not None else torch.zeros(())
    losses["loss"] = detection + auxiliary if auxiliary is not None else detection
    optimizer.zero_grad(set_to_none=True)
    if context.enabled:
        # DDP averages gradients over ranks: this rank's detection loss (normalised by the global positive
        # count) times the number of ranks, plus its auxiliary mean, average to the global batch's gradient
        scaled = detection * context.world_size
        (scaled + auxiliary if auxiliary is not None else scaled).backward()
    else:
        losses["loss"].backward()
    if t.clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(getattr(trainer, "module", trainer).model.parameters(), t.clip_grad_norm)
    optimizer.step()
    return losses
