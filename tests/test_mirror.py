"""The left-right mirror (seisbind.mirror) and the model's mirror-averaged embeddings."""

import numpy as np
import pytest
import torch

from seisbind.mirror import channels_for, mirror_images, mirror_mask, mirror_positions, mirror_records
from seisbind.models import create_model
from seisbind.training.augment import mirror_pair


def test_a_zne_record_mirrors_with_stations_reversed_and_n_negated_in_numpy_and_torch():
    rng = np.random.default_rng(0)
    record = rng.standard_normal((2, 5, 3, 7)).astype(np.float32)  # (items, stations, ZNE, time)
    out = mirror_records(record)
    for k in range(5):  # by hand: station k of the mirror is station 4 - k, with N's sign flipped
        np.testing.assert_array_equal(out[:, k, 0], record[:, 4 - k, 0])
        np.testing.assert_array_equal(out[:, k, 1], -record[:, 4 - k, 1])
        np.testing.assert_array_equal(out[:, k, 2], record[:, 4 - k, 2])
    np.testing.assert_array_equal(mirror_records(torch.from_numpy(record)).numpy(), out)
    np.testing.assert_array_equal(mirror_records(out), record)  # an involution
    image = rng.standard_normal((1, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(mirror_images(image)[..., ::-1], image)
    # the pair augmentation is the same mirror
    flipped, mirrored = mirror_pair(image, record[0])
    np.testing.assert_array_equal(flipped, mirror_images(image))
    np.testing.assert_array_equal(mirrored, out[0])
    # shots along the line: the shots reversed too
    shots = rng.standard_normal((4, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(mirror_records(shots, "shot0,shot1,shot2"), shots[::-1, ::-1])
    assert channels_for(3) == "ZNE" and channels_for(2) == "shot0,shot1"
    with pytest.raises(ValueError, match="no mirror is known for channels 'HHZ,HHN,HHE'"):
        mirror_records(record, "HHZ,HHN,HHE")
    x = torch.tensor([[0.0, 100.0, 300.0]])
    assert mirror_positions(x).tolist() == [[-300.0, -100.0, -0.0]]  # rising again along the array
    assert mirror_mask(torch.tensor([[True, True, False]])).tolist() == [[False, True, True]]


def _array_model(mirror_average):
    torch.manual_seed(0)
    return create_model("tiny", waveform={"head": "array"}, mirror_average=mirror_average).eval()


def _record(stations=6, samples=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 1e-6 * torch.randn(2, stations, 3, samples, generator=g)


def test_mirror_averaged_embeddings_are_the_same_for_a_sample_and_its_mirror():
    waves, images = _record(), torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    x = torch.tensor([[0.0, 120.0, 240.0, 400.0, 480.0, 700.0]]).expand(2, -1)  # not evenly spaced
    plain, averaged = _array_model(False), _array_model(True)
    with torch.no_grad():
        a = averaged.encode_waveform(waves, station_x_m=x)
        b = averaged.encode_waveform(mirror_records(waves), station_x_m=mirror_positions(x))
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(averaged.encode_image(images), averaged.encode_image(mirror_images(images)))
        # by hand: the mean of the two unit embeddings of the plain model (same weights), re-normalised
        p = plain.encode_waveform(waves, station_x_m=x)
        q = plain.encode_waveform(mirror_records(waves), station_x_m=mirror_positions(x))
        torch.testing.assert_close(a, torch.nn.functional.normalize(p + q, dim=-1))
        assert not torch.allclose(p, q, atol=1e-3)  # the plain model tells a record from its mirror
        # without positions the line is taken in the given order, and the reversed order is its mirror
        torch.testing.assert_close(averaged.encode_waveform(waves), averaged.encode_waveform(mirror_records(waves)))
        # a padded, masked station is still of no effect: the mask is mirrored with the stations
        padded = torch.cat([waves, 1e-3 * torch.ones(2, 1, 3, 120)], dim=1)
        mask = torch.tensor([[True] * 6 + [False]] * 2)
        xp = torch.cat([x, torch.full((2, 1), 5e3)], dim=1)
        torch.testing.assert_close(averaged.encode_waveform(padded, station_mask=mask, station_x_m=xp), a)
    # training (train mode) is not averaged: its mirror is the pair augmentation
    averaged.train()
    trained_mode = plain.train().encode_waveform(waves, station_x_m=x)
    torch.testing.assert_close(averaged.encode_waveform(waves, station_x_m=x), trained_mode)


def test_mirror_average_is_saved_with_the_model_and_checked(tmp_path):
    model = _array_model(True)
    model.save_pretrained(tmp_path / "m")
    from seisbind.models.joint import SeisBindModel

    assert SeisBindModel.from_pretrained(tmp_path / "m").config.mirror_average is True
    with pytest.raises(ValueError, match="mirror_average must be true or false"):
        create_model("tiny", mirror_average="yes")
