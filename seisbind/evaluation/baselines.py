"""Retrieval baselines measured in the same run as the model, on the same splits.

* ``random``: a random similarity matrix (what chance looks like at this gallery size).
* ``cca``: CCA (scikit-learn) between PCA features of raw images and raw waveforms, fitted on
  the train split: what a linear map between the raw modalities gets.
* ``spectrogram``: the single-tower approach tried before this project: each waveform becomes a
  log-mel spectrogram image (torchaudio), and an image tower (same architecture as the model's)
  is trained contrastively against the sections with open_clip's ClipLoss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA

from seisbind.data.dataset import StoredRows
from seisbind.evaluation.embed import iterate_items
from seisbind.evaluation.zeroshot import l2_normalize

RAW_IMAGE_SIDE = 32  # raw images average-pooled to 32 x 32 before PCA
RAW_TIME_BINS = 64  # raw waveform envelopes averaged into 64 time bins before PCA


def random_similarity(n_queries: int, n_gallery: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n_queries, n_gallery))


def _standardise_waveforms(w: torch.Tensor) -> torch.Tensor:
    # Same per-channel demean / std as the waveform tower, so amplitude scale is not a shortcut.
    w = w - w.mean(-1, keepdim=True)
    return w / w.std(-1, keepdim=True).clamp_min(1e-12)


def raw_features(dataset, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Raw image pixels (pooled) per geology and raw waveform envelopes (binned) per (geology, source)."""
    images, waves = [], []
    for image_batch, wave_batch, _ in iterate_items(dataset, batch_size):
        images.append(F.adaptive_avg_pool2d(image_batch, RAW_IMAGE_SIDE).flatten(1).numpy())
        items = _standardise_waveforms(torch.cat(list(wave_batch)))  # (items, K, C, T)
        env = F.adaptive_avg_pool1d(items.abs().flatten(0, 2)[:, None], RAW_TIME_BINS)
        waves.append(env.reshape(items.shape[0], -1).numpy())
    return np.concatenate(images), np.concatenate(waves)


def cca_similarity(train_raw, train_wave_geology, test_raw, n_pca: int = 32, n_cca: int = 8) -> np.ndarray:
    """(test waveforms, test images) cosine similarity in a CCA space fitted on train pairs."""
    img_tr, wav_tr = train_raw
    img_te, wav_te = test_raw
    n_pca = int(min(n_pca, len(img_tr) - 1, img_tr.shape[1], wav_tr.shape[1]))
    n_cca = int(min(n_cca, n_pca))
    pca_i = PCA(n_pca, random_state=0).fit(img_tr)
    pca_w = PCA(n_pca, random_state=0).fit(wav_tr)
    cca = CCA(n_components=n_cca, max_iter=2000).fit(pca_w.transform(wav_tr), pca_i.transform(img_tr)[train_wave_geology])
    w, i = cca.transform(pca_w.transform(wav_te), pca_i.transform(img_te))
    return l2_normalize(w) @ l2_normalize(i).T


def spectrogram_images(waveforms: torch.Tensor, sample_rate: float, size: tuple[int, int]) -> torch.Tensor:
    """(items, stations, C, T) -> (items, 1, H, W): log-mel spectrograms of Z, stations stacked in frequency."""
    import torchaudio

    n_fft = 64 if waveforms.shape[-1] >= 64 else waveforms.shape[-1]
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=int(sample_rate), n_fft=n_fft, hop_length=max(1, n_fft // 4), n_mels=16, f_min=0.1
    )
    z = _standardise_waveforms(waveforms)[:, :, 0]  # vertical component
    spec = torch.log(mel(z) + 1e-6)  # (items, stations, mels, frames)
    img = spec.flatten(1, 2)[:, None]  # stations stacked along the frequency axis
    return F.interpolate(img, size=size, mode="bilinear", align_corners=False)


class SpectrogramBaseline:
    """Two image towers, sections vs spectrogram images, trained with open_clip's ClipLoss."""

    def __init__(self, model_name_or_config, steps: int = 200, batch_size: int = 32, lr: float = 1e-3, seed: int = 0):
        from seisbind.models.factory import create_model
        from seisbind.models.joint import SeisBindModel

        torch.manual_seed(seed)
        make = (lambda: create_model(model_name_or_config)) if isinstance(model_name_or_config, str) else (
            lambda: SeisBindModel(model_name_or_config)
        )
        self.sections, self.spectra = make(), make()
        self.steps, self.batch_size, self.lr, self.seed = steps, batch_size, lr, seed
        self.size = self.sections.config.image.img_hw
        self.rate = float(self.sections.config.waveform.sampling_rate)

    def _spectra(self, waves: torch.Tensor) -> torch.Tensor:
        return spectrogram_images(waves, self.rate, self.size)

    def fit(self, train) -> list[float]:
        from seisbind.models.losses import build_loss

        loss_fn = build_loss("clip")
        params = [*self.sections.parameters(), *self.spectra.parameters()]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)
        rng = np.random.default_rng(self.seed)
        rows = StoredRows(train)
        losses = []
        for step in range(self.steps):
            idx = rng.choice(len(rows), size=min(self.batch_size, len(rows)), replace=False)
            stored_images, stored_waves = rows.get([int(i) for i in idx])
            images = torch.from_numpy(stored_images)[:, None]
            sources = [int(rng.integers(w.shape[0])) for w in stored_waves]  # a random source each
            waves = torch.from_numpy(np.stack([w[s] for w, s in zip(stored_waves, sources)]))
            a = self.sections.encode_image(images)
            b = self.spectra.encode_image(self._spectra(waves))
            loss = loss_fn(a, b, self.sections.logit_scale())
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.sections.clamp_logit_scale()
            losses.append(float(loss.detach()))
        return losses

    @torch.no_grad()
    def similarity(self, test, batch_size: int = 16) -> np.ndarray:
        """(test waveforms, test images) cosine similarity."""
        self.sections.eval()
        self.spectra.eval()
        img, wav = [], []
        for image_batch, wave_batch, _ in iterate_items(test, batch_size):
            img.append(self.sections.encode_image(image_batch).numpy())
            wav.append(self.spectra.encode_image(self._spectra(torch.cat(list(wave_batch)))).numpy())
        return np.concatenate(wav) @ np.concatenate(img).T
