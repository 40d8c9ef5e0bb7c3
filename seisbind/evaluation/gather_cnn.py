"""The "gather CNN" baseline (issue 12): two small CNNs, sections vs whole multi-station records.

A record of one source, ``(stations, channels, time)`` in m/s, is read as one image whose colour
planes are the components and whose two axes are stations and time (a shot gather; stored as
``(channels, stations, time)`` so that time, the long axis, is contiguous in memory), so the CNN
sees the moveout across stations that a per-trace model has to reassemble. Its preprocessing
keeps the relative amplitude of the stations and components:

1. the whole record is divided by ONE number, its peak ``max |x|`` (not per trace, not per
   channel), so every station keeps its amplitude relative to the others (a dead channel, E in
   the 2-D quake records, stays zero), and the m/s scale (~1e-9 for quake) is gone;
2. ``sign(x) * log1p(|x| / eps) / log1p(1 / eps)`` with ``eps = COMPRESSION_EPS = 0.01`` (of the
   peak): a log compression of the dynamic range onto [-1, 1], so a station 100x weaker than the
   strongest still spans ~15 % of the range instead of 1 %, while the order of amplitudes stays.

The section, ``(1, H, W)``, is scaled as the main model's image tower scales it (``image_config``:
SFM's per-image standardisation by default, fixed constants for velocity maps), so the two
read the same inputs. Each tower is
four conv blocks (Conv2d, GroupNorm, GELU, strided: the waveform tower downsamples time 64x and
stations 8x, the image tower 16x each way), a global average pool and a linear map to the
embedding, L2-normalised; about 0.35 M parameters each. GroupNorm rather than BatchNorm: no
running statistics, so a short budget gives the same network in training and in evaluation.
The two are trained together from scratch with open_clip's ClipLoss and a learnable CLIP logit
scale, AdamW, on random batches of train geologies (one random source of each), for a budget of
steps or of wall time (``fit_info`` records what was spent). Given a validation split, it keeps
the weights of its best validation waveform -> image MRR, checked every ``eval_every`` steps and
at the end, as the main model's ``best-model`` is chosen: left to its last step, it overfits a
small train split (training loss 0.06 after 1,500 quickstart steps, test R@1 down from 0.06 to
0.04). Stations, channels, time length and image size are read from the data; a dataset needs
one station count and one time length.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seisbind.data.dataset import StoredRows, load_paired, record_channels
from seisbind.mirror import channels_for, mirror_images, mirror_records, mirrorable
from seisbind.models.preprocess import COMPRESSION_EPS, compress_records, normalize_images

EMBED_DIM = 128
# Waveform tower: (out channels, kernel (stations, time), stride (stations, time)) per block. The
# first block decimates time 8x at full station resolution: the simulated records are sampled
# well above their band (quake: 2.4 Hz wavelet at 100 Hz; openfwi: 15 Hz at 1 kHz), and the
# first block's output size sets most of the cost. Measured on 70 x 5 x 1000 records, waveform
# tower alone, batches of 32, one thread of the 2-core dev machine: 34 pairs/s with this first
# block, 14 with a 4x time stride and 32 channels.
WAVE_BLOCKS = ((24, (3, 9), (1, 8)), (64, (3, 5), (2, 4)), (128, (3, 3), (2, 2)), (192, (3, 3), (2, 1)))
# Image tower: (out channels, kernel, stride) per block.
IMAGE_BLOCKS = ((32, (3, 3), (2, 2)), (64, (3, 3), (2, 2)), (128, (3, 3), (2, 2)), (192, (3, 3), (2, 2)))


def preprocess_records(records: torch.Tensor, eps: float = COMPRESSION_EPS) -> torch.Tensor:
    """(B, stations, channels, time) records in any unit -> (B, channels, stations, time) CNN input:
    one scale per record (its peak), then the log compression (see the module doc and
    :func:`seisbind.models.preprocess.compress_records`, which the towers' ``record_log`` input uses too)."""
    return compress_records(records, eps, channels_first=True)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ConvEncoder(nn.Module):
    """Conv blocks (Conv2d, GroupNorm, GELU), global average pool, linear, L2 normalisation."""

    def __init__(self, in_channels: int, blocks, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        layers, c = [], in_channels
        for out, kernel, stride in blocks:
            pad = tuple(k // 2 for k in kernel)
            layers += [nn.Conv2d(c, out, kernel, stride, pad, bias=False), nn.GroupNorm(_groups(out), out), nn.GELU()]
            c = out
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(c, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x).mean(dim=(-2, -1))
        return F.normalize(self.head(features), dim=-1)


class WaveformCNN(ConvEncoder):
    """A record (B, stations, channels, time) -> (B, embed_dim) unit embedding."""

    def __init__(self, channels: int, embed_dim: int = EMBED_DIM, eps: float = COMPRESSION_EPS) -> None:
        super().__init__(channels, WAVE_BLOCKS, embed_dim)
        self.channels, self.eps = channels, eps

    def forward(self, records: torch.Tensor) -> torch.Tensor:
        if records.ndim != 4 or records.shape[2] != self.channels:
            raise ValueError(f"expected records (batch, stations, {self.channels} channels, time); "
                             f"got shape {tuple(records.shape)}")
        return super().forward(preprocess_records(records, self.eps))


class ImageCNN(ConvEncoder):
    """Sections (B, 1, H, W) or (B, H, W) -> (B, embed_dim) unit embeddings; pixels scaled as
    ``image_config`` (an ``ImageTowerConfig``; None: per image) says."""

    def __init__(self, embed_dim: int = EMBED_DIM, image_config=None) -> None:
        super().__init__(1, IMAGE_BLOCKS, embed_dim)
        self.image_config = image_config

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images[:, None] if images.ndim == 3 else images
        return super().forward(normalize_images(x, self.image_config))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class GatherCNNBaseline:
    """Sections vs multi-station records, two small CNNs trained with open_clip's ClipLoss.

    ``steps`` and ``max_seconds`` are the training budget: ``fit`` stops at whichever comes first
    (``steps`` alone, the default 300 if neither is given, makes the run deterministic for a seed;
    a wall-time budget counts from the first step, after the towers are built, and is checked
    after each step, so it overruns by at most one step). The
    learning rate warms up linearly over ``warmup_steps`` and stays constant after (a wall-time
    budget has no known end for a decay). The towers are built on the first ``fit`` (channel count
    from the data), on ``device`` (the CPU by default; give the main model's device for a
    comparison at equal wall time). ``image_config`` (the main model's ``config.image``) makes the
    image CNN scale pixels as the main model does. ``sources_per_pair`` > 1 trains on several
    sources of each geology a pair, bound to the section and to each other, with the towers' loss
    (``train config: sources_per_pair``): the bar sees the data as the model does. So does
    ``mirror_prob``: each pair mirrored left to right with this probability, image and records
    together (the train config's ``mirror_prob``, :mod:`seisbind.mirror`); on the quickstart data
    it lifted the CNN's test R@1 from 0.085-0.105 to 0.150. ``mirror_average`` embeds each section
    and record as the mean of its own and its mirror image's embeddings, as the model can; off by
    default, since it scored the CNN lower (test MRR 0.286 against 0.318, benchmarks/RESULTS.md)."""

    def __init__(self, steps: int | None = None, max_seconds: float | None = None, batch_size: int = 32,
                 lr: float = 1e-3, weight_decay: float = 0.05, warmup_steps: int = 20,
                 embed_dim: int = EMBED_DIM, eps: float = COMPRESSION_EPS, init_logit_scale: float = 1 / 0.07,
                 max_logit_scale: float = 100.0, seed: int = 0, device: str | torch.device = "cpu",
                 image_config=None, eval_every: int = 150, sources_per_pair: int = 1, mirror_prob: float = 0.0,
                 mirror_average: bool = False) -> None:
        if steps is None and max_seconds is None:
            steps = 300
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be at least 1; got {steps}")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive; got {max_seconds}")
        self.steps, self.max_seconds = steps, max_seconds
        self.batch_size, self.lr, self.weight_decay, self.warmup_steps = batch_size, lr, weight_decay, warmup_steps
        self.embed_dim, self.eps, self.seed, self.device = embed_dim, eps, seed, torch.device(device)
        self.init_logit_scale, self.max_logit_scale = init_logit_scale, max_logit_scale
        self.image_config = image_config
        if eval_every < 1:
            raise ValueError(f"eval_every must be at least 1; got {eval_every}")
        self.eval_every = int(eval_every)
        if isinstance(sources_per_pair, bool) or not isinstance(sources_per_pair, int) or sources_per_pair < 1:
            raise ValueError(f"sources_per_pair must be an integer >= 1; got {sources_per_pair!r}")
        self.sources_per_pair = sources_per_pair
        if not 0.0 <= mirror_prob <= 1.0:
            raise ValueError(f"mirror_prob must be in [0, 1]; got {mirror_prob!r}")
        self.mirror_prob, self.mirror_average = float(mirror_prob), bool(mirror_average)
        self.channels = None  # the records' channel names, read at fit (how they mirror)
        self.waveform_cnn: WaveformCNN | None = None
        self.image_cnn: ImageCNN | None = None
        self.logit_scale = None
        self.fit_info: dict = {}

    def build(self, channels: int) -> None:
        from seisbind.models.heads import LogitScale

        torch.manual_seed(self.seed)
        self.waveform_cnn = WaveformCNN(channels, self.embed_dim, self.eps).to(self.device)
        self.image_cnn = ImageCNN(self.embed_dim, self.image_config).to(self.device)
        self.logit_scale = LogitScale(self.init_logit_scale, self.max_logit_scale).to(self.device)

    def parameter_counts(self) -> dict[str, int]:
        return {"waveform": parameter_count(self.waveform_cnn), "image": parameter_count(self.image_cnn)}

    def budget(self) -> dict:
        return {"steps": self.steps, "max_seconds": self.max_seconds}

    def _validation_mrr(self, validation) -> float:
        from seisbind.evaluation.metrics import mean_reciprocal_rank

        sim = self.similarity(validation)
        geologies = sim.shape[1]
        truth = np.repeat(np.arange(geologies), sim.shape[0] // geologies)
        self.waveform_cnn.train()
        self.image_cnn.train()
        return mean_reciprocal_rank(sim, truth[:, None] == np.arange(geologies)[None, :])

    def _modules(self) -> tuple[nn.Module, ...]:
        return self.waveform_cnn, self.image_cnn, self.logit_scale

    def _state(self) -> list[dict]:
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self._modules()]

    def fit(self, train, seconds_limit=None, validation=None) -> list[float]:
        """Train on ``train`` (a split: see :class:`seisbind.data.dataset.StoredRows`) within the
        budget; returns the step losses. ``seconds_limit`` (a callable returning seconds) replaces
        ``max_seconds`` and is read after every step: a wall budget set while the fit runs (see
        :func:`start_in_process`). With a ``validation`` split the weights of the best validation
        MRR are kept (see the module doc); its checks count in the budget, as the main model's do."""
        from seisbind.models.losses import ContrastiveLoss

        rows = StoredRows(train)
        if len(rows) < 2:
            raise ValueError(f"the gather CNN needs at least 2 train geologies; got {len(rows)}")
        _, first = rows.get([0])
        if first.shape[1] < self.sources_per_pair:
            raise ValueError(f"sources_per_pair={self.sources_per_pair} needs that many sources per geology; the "
                             f"train split holds {first.shape[1]}")
        self.build(int(first.shape[-2]))
        self.channels = record_channels(train, channels_for(int(first.shape[-2])))
        if (self.mirror_prob > 0 or self.mirror_average) and not mirrorable(self.channels):
            raise ValueError(f"mirroring needs ZNE records (2-D P-SV) or one channel a shot; these rows hold "
                             f"channels {self.channels!r}: set mirror_prob=0 and mirror_average=False")
        # Its own stream, so the batches and sources drawn are those of a run without mirroring.
        mirror_rng = np.random.default_rng(np.random.SeedSequence([self.seed, 13]))
        loss_fn = ContrastiveLoss("clip")  # the towers' loss: with several sources, their views term too
        params = [*self.waveform_cnn.parameters(), *self.image_cnn.parameters()]
        decay = [p for p in params if p.ndim >= 2]  # no decay on norms, biases, the logit scale
        no_decay = [p for p in params if p.ndim < 2] + list(self.logit_scale.parameters())
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 12]))
        batch = min(self.batch_size, len(rows))
        self.waveform_cnn.train()
        self.image_cnn.train()
        losses, step, train_seconds = [], 0, 0.0
        best = None  # (validation MRR, step, weights)
        # The budget's clock starts here: the imports and the building above (seconds in a freshly
        # spawned process, open_clip's import most of them) are not training.
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            idx = np.sort(rng.choice(len(rows), size=batch, replace=False))
            images, waves = rows.get(idx.tolist())
            sources = rng.integers(waves.shape[1], size=batch)  # a random source of each geology
            if self.sources_per_pair > 1:  # and others, view-major, as the towers' pairs have them
                others = np.argsort(rng.random((batch, waves.shape[1])) + (np.arange(waves.shape[1]) == sources[:, None]), 1)
                sources = np.concatenate([sources, *others[:, : self.sources_per_pair - 1].T])
            records = waves[np.tile(np.arange(batch), self.sources_per_pair), sources]
            if self.mirror_prob > 0:  # a mirrored pair: its image and all its records
                flip = mirror_rng.random(batch) < self.mirror_prob
                images[flip] = mirror_images(images[flip])
                views = np.tile(flip, self.sources_per_pair)
                records[views] = mirror_records(records[views], self.channels)
            records = torch.from_numpy(np.ascontiguousarray(records)).to(self.device)
            images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            for group in opt.param_groups:
                group["lr"] = self.lr * min(1.0, (step + 1) / max(1, self.warmup_steps))
            loss = loss_fn({"image": self.image_cnn(images), "waveform": self.waveform_cnn(records),
                            "logit_scale": self.logit_scale()})  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self.logit_scale.clamp_()
            losses.append(float(loss.detach()))
            step += 1
            train_seconds += time.perf_counter() - t
            if not math.isfinite(losses[-1]):
                raise RuntimeError(f"gather CNN training diverged: loss {losses[-1]} at step {step}")
            done = self.steps is not None and step >= self.steps
            if seconds_limit is not None:
                self.max_seconds = float(seconds_limit())
            done = done or self.max_seconds is not None and time.perf_counter() - start >= self.max_seconds
            if validation is not None and (done or step % self.eval_every == 0):
                mrr = self._validation_mrr(validation)
                if best is None or mrr > best[0]:
                    best = (mrr, step, self._state())
            if done:
                break
        if best is not None:
            for module, state in zip(self._modules(), best[2]):
                module.load_state_dict(state)
        seconds = time.perf_counter() - start
        self.fit_info = {
            "steps": step, "seconds": seconds, "train_seconds": train_seconds, "batch_size": batch,
            "pairs_per_s": step * batch / train_seconds if train_seconds > 0 else float("nan"),
            "budget": self.budget(), "final_loss": losses[-1], "logit_scale": float(self.logit_scale().detach()),
            "parameters": self.parameter_counts(), "threads": torch.get_num_threads(), "device": str(self.device),
            "kept_step": best[1] if best else step, "validation_mrr": best[0] if best else None,
            "sources_per_pair": self.sources_per_pair, "mirror_prob": self.mirror_prob,
            "mirror_average": self.mirror_average,
        }  # fmt: skip
        return losses

    @torch.no_grad()
    def embed(self, dataset, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """(images (geologies, dim), waveforms (geologies * sources, dim)): for each geology row,
        each source, in ``embed_split``'s order."""
        if self.waveform_cnn is None:
            raise RuntimeError("fit the gather CNN before embedding")
        self.waveform_cnn.eval()
        self.image_cnn.eval()
        rows = StoredRows(dataset)
        img, wav = [], []
        for s in range(0, len(rows), batch_size):
            images, waves = rows.get(list(range(s, min(s + batch_size, len(rows)))))
            img.append(self._embed(self.image_cnn, torch.from_numpy(images).to(self.device), mirror_images))
            records = torch.from_numpy(np.ascontiguousarray(waves.reshape(-1, *waves.shape[2:])))
            for part in torch.split(records, batch_size):
                wav.append(self._embed(self.waveform_cnn, part.to(self.device), self._mirror_records))
        return np.concatenate(img), np.concatenate(wav)

    def _mirror_records(self, records: torch.Tensor) -> torch.Tensor:
        return mirror_records(records, self.channels)

    def _embed(self, tower: nn.Module, x: torch.Tensor, mirror) -> np.ndarray:
        """Unit embeddings of ``x``; with ``mirror_average``, of ``x`` and its mirror image, averaged."""
        out = tower(x)
        if self.mirror_average:
            out = F.normalize(out + tower(mirror(x)), dim=-1)
        return out.cpu().numpy()

    def similarity(self, test, batch_size: int = 16) -> np.ndarray:
        """(test waveforms: geologies * sources, test images) cosine similarity, rows in
        ``SplitEmbeddings`` order, so ``retrieval_both_ways(sim, positives)`` applies."""
        img, wav = self.embed(test, batch_size)
        return wav @ img.T


def fit_and_score(data_dir: str, split: str, budget: dict | None, seed: int, image_config, threads: int,
                  shared_seconds=None, select: bool = True, also: Sequence[tuple[str, str]] = (),
                  sources_per_pair: int = 1, mirror_prob: float = 0.0) -> tuple:
    """Fit the gather CNN on ``data_dir``'s train split and score ``split``: ``(similarity, fit_info)``.

    ``also``: further ``(data folder, split)`` pairs to score with the same weights (held-out
    geology, say); their similarities come as a third element, a list in the same order.

    The body of :func:`start_in_process`'s child: it reads the data from disk itself, so nothing
    but paths, numbers and the image config crosses the process boundary. ``budget`` None trains
    until ``shared_seconds`` (a ``multiprocessing.Value``, +inf until the parent sets it) have passed.
    ``select`` keeps the weights of the best validation MRR (never when ``split`` is the validation split).
    ``sources_per_pair``, ``mirror_prob``: as the towers' train config (:class:`GatherCNNBaseline`).
    """
    options = {"sources_per_pair": sources_per_pair, "mirror_prob": mirror_prob}
    torch.set_num_threads(threads)
    validation = load_paired(data_dir, "validation") if select and split != "validation" else None
    if budget is None:
        baseline = GatherCNNBaseline(max_seconds=math.inf, seed=seed, image_config=image_config, **options)
        baseline.fit(load_paired(data_dir, "train"), seconds_limit=lambda: shared_seconds.value, validation=validation)
        baseline.fit_info["budget"] = baseline.budget()  # the wall time the parent set
    else:
        baseline = GatherCNNBaseline(**budget, seed=seed, image_config=image_config, **options)
        baseline.fit(load_paired(data_dir, "train"), validation=validation)
    similarity = baseline.similarity(load_paired(data_dir, split))
    if also:
        return similarity, baseline.fit_info, [baseline.similarity(load_paired(d, s)) for d, s in also]
    return similarity, baseline.fit_info


def _child(conn, *args) -> None:
    """Run :func:`fit_and_score` and send ``("ok", result)`` or ``("error", traceback text)``."""
    import traceback

    try:
        conn.send(("ok", fit_and_score(*args)))
    except BaseException:  # noqa: BLE001 - whatever stopped the fit is reported to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class FitInProcess:
    """The gather CNN fitting in a spawned process: :meth:`get` its ``(similarity, fit_info)``,
    :meth:`stop` it (kills a fit still running; always call it, in a ``finally``). A fit started
    without a budget trains until :meth:`set_max_seconds` gives it one."""

    def __init__(self, process, conn, shared_seconds=None) -> None:
        self.process, self.conn, self.shared_seconds = process, conn, shared_seconds

    @property
    def open_ended(self) -> bool:
        return self.shared_seconds is not None

    def set_max_seconds(self, seconds: float) -> None:
        """The wall budget of an open-ended fit, counted from its first step (it stops at once if
        that much has passed)."""
        if not self.open_ended:
            raise RuntimeError("this gather CNN was started with a budget of its own; set_max_seconds is for "
                               "one started with budget=None")
        if not seconds > 0:
            raise ValueError(f"the gather CNN's wall budget must be positive; got {seconds}")
        self.shared_seconds.value = float(seconds)

    def get(self, timeout: float | None = None) -> tuple:
        if self.open_ended and math.isinf(self.shared_seconds.value):
            raise RuntimeError("the gather CNN has no wall budget yet: call set_max_seconds before get")
        if not self.conn.poll(timeout):
            raise TimeoutError(f"the gather CNN's process gave no result within {timeout} s")
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the gather CNN's process died (exit code {self.process.exitcode}) before "
                               "sending its result; out of memory?") from None
        if status != "ok":
            raise RuntimeError(f"the gather CNN failed in its process:\n{value}")
        return value

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.conn.close()


def start_in_process(data_dir, split: str, budget: dict | None, seed: int, image_config, threads: int,
                     select: bool = True, also: Sequence[tuple[str, str]] = (), sources_per_pair: int = 1,
                     mirror_prob: float = 0.0) -> FitInProcess:
    """Start :func:`fit_and_score` in a fresh process.

    The gather CNN's budget is wall time, and its loop takes ``threads`` cores as the main
    model's training loop did (that run's data worker took another). Run in its own process, it
    leaves the caller free to do other work on the remaining cores meanwhile: fit the other
    baselines and probes, or train the main model itself (``budget=None``: the fit runs until
    :meth:`FitInProcess.set_max_seconds` gives it the model's training wall time; the quickstart
    trains both at once, one core each). In one process the two would share the interpreter lock.
    The child is spawned, not forked (a forked child of a process that has run torch can
    deadlock in its thread pools), and answers through a pipe: a ``multiprocessing.Pool``'s queue
    locks are left to the resource tracker, which warns of leaked semaphores at exit. ``select``,
    ``also``, ``sources_per_pair`` and ``mirror_prob``: as :func:`fit_and_score`, whose result
    :meth:`FitInProcess.get` returns.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    shared = ctx.Value("d", math.inf, lock=False) if budget is None else None
    also = [(str(d), str(s)) for d, s in also]
    process = ctx.Process(target=_child, args=(send, str(data_dir), split, budget, seed, image_config, threads, shared, select,
                                               also, sources_per_pair, mirror_prob),
                          daemon=True, name="gather-cnn")  # fmt: skip
    process.start()
    send.close()  # the child holds the sending end now
    return FitInProcess(process, receive, shared)
