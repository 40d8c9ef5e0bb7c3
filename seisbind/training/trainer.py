"""The contrastive training loop, on one CPU or GPU or under ``accelerate launch``.

Accelerate places the model, wraps it in DistributedDataParallel when there are several
processes, runs mixed precision and gradient accumulation, saves and restores state, and feeds
the trackers. The contrastive loss is open_clip's, told the process's rank and the world size,
so it scores the global batch (features gathered with their gradients).

``step`` counts optimiser steps. After step ``s`` the loop logs, validates (every ``eval_every``
steps and at the end), keeps the best model (``best-model/``, by waveform-to-image mean reciprocal
rank) and checkpoints (every ``save_every`` steps and at the end); a checkpoint of step ``s``
resumes at step ``s + 1`` with the data, optimiser, scheduler and random state the uninterrupted
run had. The run is ``max_steps`` long, or with ``time_budget_s`` as many steps as fit that many
seconds of the loop, chosen at the end of warm-up (:mod:`seisbind.training.budget`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seisbind.modalities import ModalityType
from seisbind.training.augment import WaveformAugment
from seisbind.training.budget import StepBudget
from seisbind.training.checkpointing import (
    TMP_PREFIX,
    TRAINER_STATE_NAME,
    CheckpointError,
    checkpoint_root,
    clean_partial,
    finalize,
    find_resumable,
    list_checkpoints,
    prune,
    read_trainer_state,
    save_model_atomic,
    step_dir_name,
    verify_checkpoint,
    write_json_atomic,
)
from seisbind.training.compiling import compile_towers
from seisbind.training.config import TrainConfig
from seisbind.training.data import GlobalBatchSampler, PairDataset, load_rows, make_loader
from seisbind.training.evaluate import evaluate_retrieval
from seisbind.training.optim import build_optimizer, build_scheduler

# best-model: the validation checkpoint of highest waveform -> image mean reciprocal rank. Recall@1
# over a 200-query validation split moves by 0.02 with noise and ties often (steps 600 and 900 of
# the quickstart both 0.110, while R@5 went 0.375 -> 0.415); the reciprocal rank counts every query.
BEST_METRIC = "wave_to_image_mrr"
METRICS_FILE = "metrics.jsonl"
BEST_DIR, FINAL_DIR = "best-model", "final-model"
# Keys whose change on resume makes the continued run a different run from the checkpointed one.
_TRAJECTORY_KEYS = ("model", "model_overrides", "data", "seed", "batch_size", "gradient_accumulation_steps",
                    "min_stations", "max_stations", "station_drop_prob", "mirror_prob", "amplitude_scale", "noise_level",
                    "max_time_shift_s", "velocity_scale", "sources_per_pair", "lr", "weight_decay", "warmup_steps",
                    "max_steps", "time_budget_s", "lock", "lock_image", "lock_waveform", "captions_per_geology", "compile")


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) stopped being finite; the message names the step."""


@dataclass
class TrainResult:
    """What a finished run reached."""

    step: int
    loss: float | None  # the last step's loss (mean over its micro-batches and processes)
    losses: dict[int, float]  # every step's loss run by this call
    metrics: dict[str, float]  # the last validation
    best_metric: float | None
    best_step: int | None
    output_dir: Path
    resumed_from: Path | None = None
    wall_seconds: float = 0.0
    main_process: bool = True  # False in the other processes of a multi-process run
    extra: dict[str, Any] = field(default_factory=dict)


def _hparams(config: TrainConfig) -> dict[str, Any]:
    # Trackers take scalars and strings only.
    out = {}
    for key, value in config.to_dict().items():
        out[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return out


def _check_data(rows, model, split: str, path: str) -> None:
    """Refuse data the model cannot read, before any step runs."""
    first = rows[0]
    cfg = model.config
    h, w = first["image"].shape[-2:]
    if not cfg.image.dynamic_img_size and (h, w) != tuple(cfg.image.img_hw):
        raise ValueError(
            f"{path} ({split}) holds {h}x{w} images but model {cfg.name!r} takes {cfg.image.img_hw[0]}x"
            f"{cfg.image.img_hw[1]}; set model_overrides.image.img_size={h if h == w else [h, w]} (or "
            f"model_overrides.image.dynamic_img_size=true), or generate with --image-size {cfg.image.img_hw[0]}"
        )
    rate = first.get("sampling_rate")
    if rate is not None and abs(float(rate) - cfg.waveform.sampling_rate) > 1e-6:
        raise ValueError(f"{path} ({split}) is sampled at {float(rate):g} Hz but the waveform tower expects "
                         f"{cfg.waveform.sampling_rate:g} Hz; resample the data or set "
                         f"model_overrides.waveform.sampling_rate")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _load_state_or_refuse(accelerator, folder: Path) -> None:
    """``accelerator.load_state``, refusing a checkpoint whose random states do not load.

    Accelerate catches any error while restoring ``random_states_<rank>.pkl`` and only logs "Could
    not load random states" at INFO level: the run would go on with other random streams and no
    longer continue the checkpointed one. Its log is listened to here, and that case is an error."""
    logger = logging.getLogger("accelerate.checkpointing")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        accelerator.load_state(str(folder))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if any("Could not load random states" in m for m in handler.messages):
        raise CheckpointError(f"checkpoint {folder}: its random states (random_states_{accelerator.process_index}.pkl) "
                              "did not load, so the resumed run would not continue the same random streams; "
                              "resume from an earlier checkpoint")


def _resolve_resume(resume: str, root: Path, log) -> Path | None:
    """The checkpoint folder to resume from: ``latest`` falls back past bad folders, a path must verify."""
    if resume == "latest":
        folder = find_resumable(root, warn=log)
        if folder is None:
            log(f"resume=latest: no checkpoint in {root} yet; starting from step 0")
        return folder
    folder = Path(resume)
    verify_checkpoint(folder)  # an explicitly named folder is never silently replaced by another
    return folder


# batch key -> model input key (ImageBind's inputs dict: modalities and their side inputs)
_BATCH_INPUTS = {"images": "image", "waveforms": "waveform", "station_mask": "station_mask",
                 "station_x_m": "station_x_m", "texts": "text"}  # fmt: skip


def model_inputs(batch: dict, device) -> dict:
    """A collated batch as the model's ``forward(inputs)`` dict, tensors on ``device``."""
    out = {}
    for key, name in _BATCH_INPUTS.items():
        if batch.get(key) is not None:
            value = batch[key]
            out[name] = value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
    return out


def _decide_budget(budget: StepBudget, core, val_rows, accelerator, config: TrainConfig, step: int, log) -> int:
    """Fix a budgeted run's step count at the end of warm-up (every process gets the main one's)."""
    from accelerate.utils import broadcast_object_list

    window_end = time.perf_counter()
    evaluate_retrieval(core, val_rows, accelerator, config.val_batch_size)  # timed only: changes no state
    total = budget.decide(window_end, time.perf_counter(), config.eval_every, config.max_steps)
    total = max(int(broadcast_object_list([total])[0]), step)
    log(f"time budget {config.time_budget_s:g} s: {total} steps fit ({budget.seconds_per_step:.3f} s a step, "
        f"{budget.seconds_per_validation:.1f} s a validation; at most max_steps {config.max_steps})")
    return total


def _set_total_steps(scheduler, total_steps: int) -> None:
    """Point the cosine of a ``build_scheduler`` schedule (Accelerate-wrapped or not) at ``total_steps``."""
    inner = getattr(scheduler, "scheduler", scheduler)
    for fn in inner.lr_lambdas:
        fn.total_steps = int(total_steps)


def model_card_info(config: TrainConfig) -> dict:
    """What the saved models' cards say of their training: the resolved config, and the data folder
    with its generation plan's scenario, size and seed (when it is a `seisbind generate` folder)."""
    data: dict[str, Any] = {"folder": str(config.data)}
    plan_path = Path(config.data) / "generation.json"
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        data.update({k: plan[k] for k in ("scenario", "num_geologies", "seed", "split_fractions") if k in plan})
    return {"training_data": data, "training_config": config.to_dict()}


def train(config: TrainConfig) -> TrainResult:
    """Train the joint model as ``config`` says; see the module doc."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, set_seed
    from tqdm.auto import tqdm

    from seisbind.models import ContrastiveLoss, create_model

    if not config.data:
        raise ValueError("train config: data (the folder written by `seisbind generate`) is not set; pass data=PATH")
    started = time.perf_counter()
    # Ground velocities are ~1e-9 m/s: their products reach subnormal floats, which x86 CPUs
    # compute ~10x slower. Flushing them to zero changes nothing measurable and restores the speed.
    torch.set_flush_denormal(True)
    if config.threads:
        torch.set_num_threads(config.threads)
    # open_clip gathers features with torch.distributed.nn.all_gather, deprecated but correct (it
    # carries gradients); one warning per process and step would drown the log.
    warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                            category=FutureWarning)
    output_dir = Path(config.output_dir)
    root = checkpoint_root(output_dir)
    tracker = None if config.tracker == "none" else config.tracker
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        cpu=config.cpu,
        log_with=tracker,
        project_dir=str(output_dir),
        # One scheduler step per optimiser step, whatever the number of processes: the schedule is
        # written in optimiser steps, and the global batch is what each step consumes.
        step_scheduler_with_optimizer=False,
    )
    log = accelerator.print
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index

    # Resolve the checkpoint on the main process only (hashing is not free) and share the answer.
    resume_folder, problem = None, None
    if main:
        clean_partial(root)
        try:
            if config.resume:
                resume_folder = _resolve_resume(config.resume, root, log)
            elif list_checkpoints(root):
                raise ValueError(f"{output_dir} already holds checkpoints from an earlier run; pass --resume latest "
                                 f"to continue it, or choose another output_dir")
        except (CheckpointError, ValueError) as err:
            problem = f"{type(err).__name__}: {err}"
    shared = broadcast_object_list([str(resume_folder) if resume_folder else None, problem])
    if shared[1] is not None:
        kind, _, message = shared[1].partition(": ")
        raise (CheckpointError if kind == "CheckpointError" else ValueError)(message)
    resume_folder = Path(shared[0]) if shared[0] else None

    set_seed(config.seed)
    model = create_model(config.model, image_checkpoint=config.image_checkpoint,
                         waveform_checkpoint=config.waveform_checkpoint, **config.model_overrides)
    for modality, unlocked_blocks in config.locks().items():
        model.lock_tower(modality, unlocked_blocks)

    text = ModalityType.TEXT in model.trunks
    train_rows = load_rows(config.data, config.train_split, labels=text)
    val_rows = load_rows(config.data, config.val_split, labels=text)
    for rows, split in ((train_rows, config.train_split), (val_rows, config.val_split)):
        if len(rows) == 0:
            raise ValueError(f"{config.data} has no {split!r} rows")
        _check_data(rows, model, split, config.data)
    if len(val_rows) < 2:  # refused before step 1, not at the first validation after a checkpoint
        raise ValueError(f"the {config.val_split!r} split of {config.data} has {len(val_rows)} geology; validation "
                         "retrieval needs at least 2 (generate more geologies)")
    rate = model.config.waveform.sampling_rate
    augment = WaveformAugment(tuple(config.amplitude_scale), tuple(config.noise_level),
                              int(round(config.max_time_shift_s * rate)))
    dataset = PairDataset(train_rows, config.seed, config.min_stations, config.max_stations, augment,
                          config.mirror_prob, config.station_drop_prob,
                          captions_per_geology=config.captions_per_geology if text else 0,
                          tokenizer=model.preprocessors[ModalityType.TEXT].tokenizer if text else None,
                          sources_per_pair=config.sources_per_pair, velocity_scale=tuple(config.velocity_scale))

    optimizer = build_optimizer(model, config.lr, config.weight_decay, tuple(config.betas), config.eps)
    scheduler = build_scheduler(optimizer, config.warmup_steps, config.max_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    core = accelerator.unwrap_model(model)
    if config.compile:
        problem = compile_towers(core)
        if problem is not None:
            log(f"note: compile=true, but this machine cannot compile ({problem}); training eagerly")
    loss_options: dict[str, Any] = {"rank": rank, "world_size": world}
    if core.config.loss == "clip":
        # Gathering with gradients makes the gradient of the global-batch loss exact across processes.
        loss_options.update(local_loss=config.local_loss, gather_with_grad=True)
    loss_fn = ContrastiveLoss(core.config.loss, pairs=core.config.pairs, **loss_options)
    card = model_card_info(config)

    start_step, best_metric, best_step = 0, None, None
    # The run's step count: max_steps, or with time_budget_s what fits the budget (fixed at the end
    # of warm-up; see seisbind.training.budget) and kept in the checkpoints.
    total_steps, seconds_before = config.max_steps, 0.0
    budgeted_total = False  # total_steps was chosen by a time budget (this run's or the checkpoint's)
    # The loss window being averaged for the next log line, carried through checkpoints so a resumed
    # run logs the same means as an uninterrupted one.
    window_loss, window_steps = 0.0, 0
    if resume_folder is not None:
        _load_state_or_refuse(accelerator, resume_folder)
        state = read_trainer_state(resume_folder)
        start_step, best_metric, best_step = int(state["step"]), state.get("best_metric"), state.get("best_step")
        window_loss, window_steps = float(state.get("window_loss", 0.0)), int(state.get("window_steps", 0))
        if state.get("budget_decided"):
            total_steps, budgeted_total = int(state["total_steps"]), True
        seconds_before = float(state.get("train_seconds", 0.0))
        changed = [k for k in _TRAJECTORY_KEYS if state.get("config", {}).get(k) != config.to_dict()[k]]
        if state.get("world_size") != world:
            changed.append("world_size")
        if changed:
            log(f"note: resuming with a different {changed} than the checkpoint's run: the continued run "
                "differs from an uninterrupted one")
        log(f"resumed from {resume_folder} at step {start_step}")
    last_checkpoint = resume_folder

    accum = config.gradient_accumulation_steps
    global_batch = config.batch_size * world
    sampler = GlobalBatchSampler(len(train_rows), global_batch, config.seed, rank, world,
                                 start_batch=start_step * accum)
    loader = make_loader(dataset, sampler, config.num_workers, pin_memory=accelerator.device.type == "cuda")

    metrics_path = output_dir / METRICS_FILE
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        if start_step and metrics_path.exists():
            # Lines past the checkpoint came from the run that was killed; the resumed run rewrites them.
            lines = [ln for ln in metrics_path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["step"] <= start_step]
        metrics_path.write_text("".join(ln + "\n" for ln in kept))
    # The latest validation metrics of the kept history: what final-model records if a resumed run
    # has no step left to run (a finished run, or one killed after its last checkpoint).
    metrics: dict[str, float] = {}
    if start_step and metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            entry = json.loads(line)
            if any(k.startswith("val/") for k in entry):
                metrics = {k[len("val/"):]: v for k, v in entry.items() if k.startswith("val/")}
    metrics = broadcast_object_list([metrics])[0]
    if tracker:
        accelerator.init_trackers("logs", config=_hparams(config))

    def record(entry: dict[str, Any], step: int) -> None:
        accelerator.log(entry, step=step)
        if main:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps({"step": step, **entry}) + "\n")

    def trainer_state(step: int) -> dict[str, Any]:
        return {"step": step, "best_metric": best_metric, "best_step": best_step, "world_size": world,
                "global_batch_size": global_batch, "config": config.to_dict(),
                "window_loss": window_loss, "window_steps": window_steps, "total_steps": total_steps,
                "budget_decided": budgeted_total,
                "train_seconds": seconds_before + time.perf_counter() - started}

    def save_checkpoint(step: int) -> Path:
        name = step_dir_name(step)
        tmp, final = root / f"{TMP_PREFIX}{name}", root / name
        if main:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()  # every process has written its random states
        if main:
            write_json_atomic(tmp / TRAINER_STATE_NAME, trainer_state(step))
            finalize(tmp, final, step)
            prune(root, config.keep_last, protect=final)
        accelerator.wait_for_everyone()
        return final

    def diverged(what: str, value: float, step: int, micro: int) -> TrainingDiverged:
        where = f"step {step}" + (f" (micro-batch {micro + 1} of {accum})" if accum > 1 else "")
        good = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was saved yet"
        return TrainingDiverged(
            f"training stopped: the {what} is {value} at {where}, before that step's update; nothing after it was "
            f"saved and {good}. Lower lr, lengthen warmup_steps or check the data, then resume with --resume latest"
        )

    losses: dict[int, float] = {}
    last_loss = None
    rate_steps, window_start = 0, time.perf_counter()  # throughput: steps timed in this process
    clip = config.grad_clip_norm
    bar = tqdm(total=total_steps, initial=start_step, disable=not (config.progress and main),
               desc="train", dynamic_ncols=True)
    batches = iter(loader)
    budget = None  # set while a budgeted run has its step count still to choose
    if config.time_budget_s is not None and not budgeted_total:
        if start_step >= config.warmup_steps:
            log(f"note: time_budget_s is ignored: the run resumes at step {start_step}, after its warm-up, from a "
                f"checkpoint without a budgeted step count; it runs max_steps ({config.max_steps})")
        else:
            # The budget counts the whole call (set-up included: it is wall time a user waits for).
            budget = StepBudget(config.time_budget_s, config.warmup_steps, started - seconds_before, start_step,
                                time.perf_counter())
    step = start_step
    try:
        while step < total_steps:
            step += 1
            model.train()
            step_loss, grad_norm = 0.0, None
            for micro in range(accum):
                inputs = model_inputs(next(batches), accelerator.device)
                with accelerator.accumulate(model):
                    loss = loss_fn(model(inputs))
                    value = float(accelerator.reduce(loss.detach().float(), "mean"))
                    if not math.isfinite(value):
                        raise diverged("loss", value, step, micro)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and clip > 0:
                        norm = accelerator.clip_grad_norm_(model.parameters(), clip)
                        grad_norm = float(norm) if norm is not None else None
                        # fp16's scaler skips steps with overflowing gradients by design; elsewhere it is a fault.
                        if grad_norm is not None and not math.isfinite(grad_norm) and config.mixed_precision != "fp16":
                            raise diverged("gradient norm", grad_norm, step, micro)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                step_loss += value / accum
            scheduler.step()
            core.clamp_logit_scale()
            losses[step], last_loss = step_loss, step_loss
            window_loss += step_loss
            window_steps += 1
            rate_steps += 1
            scale = float(core.logit_scale().detach())
            bar.update(1)

            if step % config.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                pairs_per_s = global_batch * accum * rate_steps / elapsed if elapsed > 0 else float("nan")
                entry = {"train/loss": window_loss / window_steps, "train/logit_scale": scale,
                         "train/lr": scheduler.get_last_lr()[0], "train/pairs_per_s": pairs_per_s,
                         "train/epoch": (step * accum) / sampler.batches_per_epoch}
                if config.sources_per_pair > 1:  # a pair is a geology; the waveform tower reads this many records
                    entry["train/records_per_s"] = pairs_per_s * config.sources_per_pair
                if grad_norm is not None:
                    entry["train/grad_norm"] = grad_norm
                if len(core.logit_scales) > 1:  # each bound pair's temperature
                    for key, module in core.logit_scales.items():
                        entry[f"train/logit_scale/{key}"] = float(module().detach())
                if len(loss_fn.last_terms) > 1:  # each term's latest value: pairs, and views with several sources
                    for key, term in loss_fn.last_terms.items():
                        entry[f"train/loss/{key}"] = float(term)
                record(entry, step)
                bar.set_postfix(loss=f"{entry['train/loss']:.4f}", scale=f"{scale:.1f}", pairs_s=f"{pairs_per_s:.1f}")
                window_loss, window_steps, rate_steps = 0.0, 0, 0
                window_start = time.perf_counter()

            if budget is not None and budget.step_done(step, time.perf_counter()):
                total_steps = _decide_budget(budget, core, val_rows, accelerator, config, step, log)
                budgeted_total = True
                _set_total_steps(scheduler, total_steps)
                bar.total = total_steps
                bar.refresh()
                record({"budget/total_steps": total_steps, "budget/seconds_per_step": budget.seconds_per_step,
                        "budget/seconds_per_validation": budget.seconds_per_validation}, step)
                budget = None
                window_start, rate_steps = time.perf_counter(), 0  # throughput counts training only

            evaluated = (config.eval_every and step % config.eval_every == 0) or step == total_steps
            if evaluated:
                metrics = evaluate_retrieval(core, val_rows, accelerator, config.val_batch_size)
                record({f"val/{k}": v for k, v in metrics.items()}, step)
                if main:
                    bar.write(f"step {step}: validation (waveform -> image) recall@1 {metrics['wave_to_image_r1']:.3f}, "
                              f"MRR {metrics[BEST_METRIC]:.3f} over {int(metrics['gallery_size'])} geologies (chance {metrics['chance_r1']:.3f})")
                if best_metric is None or metrics[BEST_METRIC] > best_metric:
                    best_metric, best_step = metrics[BEST_METRIC], step
                    if main:
                        save_model_atomic(core, output_dir / BEST_DIR, {"step": step, "metrics": metrics}, card)
                    accelerator.wait_for_everyone()
            if (config.save_every and step % config.save_every == 0) or step == total_steps:
                last_checkpoint = save_checkpoint(step)
            if evaluated or last_checkpoint is not None and last_checkpoint.name == step_dir_name(step):
                window_start, rate_steps = time.perf_counter(), 0  # throughput counts training only
        if main:
            save_model_atomic(core, output_dir / FINAL_DIR, {"step": total_steps, "metrics": metrics}, card)
        accelerator.wait_for_everyone()
    finally:
        bar.close()
        del batches  # stops the loader's workers
        accelerator.end_training()
    return TrainResult(
        step=total_steps, loss=last_loss, losses=losses, metrics=metrics, best_metric=best_metric,
        best_step=best_step, output_dir=output_dir, resumed_from=resume_folder,
        wall_seconds=time.perf_counter() - started, main_process=main,
    )
