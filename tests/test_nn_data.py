"""Training data: determinism, held-out seeds, masks as configured, fastMRI folders written by write_fastmri."""

import numpy as np
import pytest
import torch

from workbench.nn.batch import collate
from workbench.nn.data import TRAIN_SEED_OFFSET, DataConfigError, FastMRIData, SyntheticData, make_data

SMALL = {"shapes": [[40, 40], [48, 40]], "n_coils": [1, 3], "readout_oversampling": [1, 2], "n_val": 2}


def test_synthetic_batches_are_deterministic_distinct_and_held_out():
    data = SyntheticData(SMALL, seed=3)
    a = data.batch(5, rank=1, world_size=2, batch_size=2)
    b = data.batch(5, rank=1, world_size=2, batch_size=2)
    for x, y in zip(a, b):
        assert torch.equal(x["kspace"], y["kspace"]) and x["meta"] == y["meta"]
    other_rank = data.batch(5, rank=0, world_size=2, batch_size=2)
    seeds = {it["meta"]["seed"] for it in a} | {it["meta"]["seed"] for it in other_rank}
    assert len(seeds) == 4  # every rank and item draws its own slice
    # step settings are shared by the ranks (so that they batch and stay in step)
    assert {it["kspace"].shape for it in a + other_rank} == {a[0]["kspace"].shape}
    val = {it["meta"]["seed"] for it in data.validation_items()}
    train = {data.train_seed(i) for i in range(0, 10**6, 997)}
    assert max(val) < TRAIN_SEED_OFFSET <= min(train) and not val & train


def test_synthetic_item_content_and_masks():
    data = SyntheticData({**SMALL, "n_coils": [3], "readout_oversampling": [2], "target": "reference"},
                         sampling={"kinds": ["equispaced"], "accelerations": [4], "center_fractions": [0.08]})
    item = data.batch(0)[0]
    k, mask = item["kspace"], item["mask"]
    h, w = item["recon_shape"]
    assert k.shape == (3, 2 * h, w) and tuple(item["grid_shape"]) == (2 * h, w)
    # 1D line mask: whole columns, about 1/4 of them, the centre 8% fully sampled
    assert bool((mask == mask[:1]).all())
    cols = mask[0].numpy()
    assert abs(cols.mean() - 0.25) < 0.08 and cols[w // 2 - 1 : w // 2 + 2].all()
    assert bool((k[:, ~mask] == 0).all())
    assert item["meta"]["sampling"]["kind"] == "equispaced" and item["meta"]["n_coils"] == 3
    # the target is the RSS of the fully sampled data (scaled with the data's random units)
    assert item["target"].shape == (h, w) and item["data_range"] == pytest.approx(float(item["target"].max()))


def test_swapped_readout_items_are_the_transposed_slice_with_masks_along_the_former_readout():
    cfg = {**SMALL, "shapes": [[48, 40]], "n_coils": [3], "readout_oversampling": [2]}
    sampling = {"kinds": ["equispaced"], "accelerations": [4], "center_fractions": [0.08]}
    plain, swapped = SyntheticData(cfg, sampling), SyntheticData({**cfg, "swap_readout_p": 1.0}, sampling)
    setting = plain.draw_setting(np.random.default_rng(0))
    a = plain.item(TRAIN_SEED_OFFSET + 7, setting)
    b = swapped.item(TRAIN_SEED_OFFSET + 7, {**setting, "swap_readout": True})
    assert not a["meta"]["swap_readout"] and b["meta"]["swap_readout"]
    # the same slice, transposed: readout (oversampled 2x, 96 samples) now runs along W
    assert torch.equal(b["target"], a["target"].T) and tuple(b["recon_shape"]) == (40, 48)
    assert tuple(b["grid_shape"]) == (40, 96) and b["kspace"].shape == (3, 40, 96)
    mask = b["mask"]
    assert bool((mask == mask[:1]).all()) and abs(mask[0].float().mean().item() - 0.25) < 0.08
    # the samples kept are those of the transposed fully sampled k-space
    sim = plain.simulate(TRAIN_SEED_OFFSET + 7, setting)[0]["kspace"]
    units = b["meta"]["units"]
    expect = torch.from_numpy(sim).transpose(-2, -1) * units * mask
    assert torch.allclose(b["kspace"], expect.to(b["kspace"].dtype))
    # drawn per step with the configured probability; p = 0 draws nothing (older configs keep their data)
    draws = [swapped.draw_setting(np.random.default_rng(i))["swap_readout"] for i in range(4)]
    assert all(draws)
    half = SyntheticData({**cfg, "swap_readout_p": 0.5}, sampling)
    frac = np.mean([half.draw_setting(np.random.default_rng(i))["swap_readout"] for i in range(200)])
    assert 0.35 < frac < 0.65
    assert {k: v for k, v in plain.draw_setting(np.random.default_rng(3)).items() if k != "swap_readout"} == \
        {k: v for k, v in half.draw_setting(np.random.default_rng(3)).items() if k != "swap_readout"}
    with pytest.raises(DataConfigError, match="swap_readout_p"):
        SyntheticData({**cfg, "swap_readout_p": 2})


@pytest.mark.parametrize("key,subject", [("phantom_p", "phantom"), ("real_p", "real")])
def test_phantom_and_real_items_replace_heads_with_the_configured_probability(key, subject):
    cfg = {**SMALL, "shapes": [[48, 48]], "n_coils": [2], "readout_oversampling": [1]}
    heads, others = SyntheticData(cfg), SyntheticData({**cfg, key: 1.0})
    setting = heads.draw_setting(np.random.default_rng(0))
    a, b = heads.item(TRAIN_SEED_OFFSET + 3, setting), others.item(TRAIN_SEED_OFFSET + 3, setting)
    assert a["meta"]["subject"] == "brain" and b["meta"]["subject"] == subject
    assert a["target"].shape == b["target"].shape and not torch.equal(a["target"], b["target"])
    # the item's other draws (mask, units) are those of the head it replaces
    assert torch.equal(a["mask"], b["mask"]) and a["meta"]["units"] == b["meta"]["units"]
    half = SyntheticData({**cfg, key: 0.3})
    share = np.mean([half.item(TRAIN_SEED_OFFSET + i, setting)["meta"]["subject"] == subject for i in range(40)])
    assert 0.1 < share < 0.5


def test_fill_fov_p_makes_that_share_of_the_phantoms_fill_the_field_of_view():
    cfg = {**SMALL, "shapes": [[48, 48]], "n_coils": [2], "readout_oversampling": [2], "phantom_p": 1.0}
    plain, filled = SyntheticData(cfg), SyntheticData({**cfg, "fill_fov_p": 1.0})
    setting = plain.draw_setting(np.random.default_rng(0))
    a, b = plain.item(TRAIN_SEED_OFFSET + 3, setting), filled.item(TRAIN_SEED_OFFSET + 3, setting)
    area = lambda item: float((item["target"].abs() > 0.3 * item["target"].abs().max()).float().mean())
    assert area(b) > 0.6 and area(b) > area(a)  # the container covers most of the reconstructed field of view
    zero = SyntheticData({**cfg, "fill_fov_p": 0.0})  # draws nothing at 0: older configs keep their data
    assert torch.equal(zero.item(TRAIN_SEED_OFFSET + 3, setting)["target"], a["target"])
    with pytest.raises(DataConfigError, match="fill_fov_p"):
        SyntheticData({**cfg, "fill_fov_p": -0.1})


def test_synthetic_noncartesian_sampling_shares_a_trajectory():
    data = SyntheticData({**SMALL, "readout_oversampling": [1]},
                         sampling={"kinds": ["golden-radial"], "accelerations": [3]})
    items = data.batch(0, batch_size=2)
    (batch,) = collate(items)
    assert batch.trajectory is not None and batch.kspace.dim() == 3 and batch.size == 2
    assert batch.dcf.shape == (batch.trajectory.shape[1],)


def test_bad_data_configs_name_the_problem(tmp_path):
    with pytest.raises(DataConfigError, match="unknown option"):
        SyntheticData({"shape": [64, 64]})
    with pytest.raises(DataConfigError, match="kinds"):
        SyntheticData(SMALL, sampling={"kinds": ["zigzag"]})
    with pytest.raises(DataConfigError, match="separate models"):
        SyntheticData(SMALL, sampling={"kinds": ["random", "radial"]})
    with pytest.raises(DataConfigError, match="no fastMRI"):
        make_data({"kind": "fastmri", "path": str(tmp_path)})


def _write_volume(path, seed, coils, shape=(48, 40), slices=2):
    from workbench.io.fastmri import write_fastmri
    from workbench.simulate import generate_volume

    vol = generate_volume(seed, slice_positions=[10.0 + 10 * i for i in range(slices)], shape=shape, n_coils=coils)
    k = vol["kspace"] if coils > 1 else vol["kspace"][:, 0]
    write_fastmri(path, k, vol["reference"])
    return vol


def test_fastmri_folder_data(tmp_path):
    vols = [_write_volume(tmp_path / f"vol{i}.h5", i, coils) for i, coils in enumerate((4, 4, 1))]
    data = FastMRIData({"path": str(tmp_path), "val_every": 3}, seed=1)
    assert len(data.val_files) == 1 and len(data.train_files) == 2
    assert len(data.train_index) == 4
    seen = set()
    for step in range(4):  # one epoch: every training slice once, deterministic order
        (item,) = data.batch(step)
        seen.add((item["meta"]["file"], item["meta"]["slice"]))
        again = data.batch(step)[0]
        assert torch.equal(item["kspace"], again["kspace"])
    assert len(seen) == 4 and not any(f == "vol0.h5" for f, _ in seen)
    (item,) = data.batch(0)
    name, index = item["meta"]["file"], item["meta"]["slice"]
    vol = vols[int(name[3])]
    # the target is the file's stored reference, the data range its volume maximum
    np.testing.assert_allclose(item["target"].numpy(), vol["reference"][index], rtol=1e-6)
    assert item["data_range"] == pytest.approx(float(vol["reference"].max()), rel=1e-6)
    full = torch.from_numpy(vol["kspace"][index])  # [C, H, W], C = 1 for the single-coil file
    assert torch.equal(item["kspace"], full * item["mask"])
    val = data.validation_items()
    assert val and all(v["meta"]["file"] == "vol0.h5" for v in val)


def test_real_items_share_one_draw_with_phantoms(monkeypatch):
    cfg = {**SMALL, "shapes": [[48, 48]], "n_coils": [2], "readout_oversampling": [1]}
    setting = SyntheticData(cfg).draw_setting(np.random.default_rng(0))
    # the subject choice, without simulating: one uniform draw splits phantom / real / template head
    import workbench.simulate as simulate

    class Params:
        snr = 30.0

    chosen, upsampling = [], []

    def fake_slice(seed, **kw):
        chosen.append((kw.get("subject", "brain"), kw.get("fov_mm")))
        upsampling.append(kw.get("real_max_upsampling"))
        return {"params": Params()}

    monkeypatch.setattr(simulate, "generate_slice", fake_slice)
    seeds = range(TRAIN_SEED_OFFSET, TRAIN_SEED_OFFSET + 3000)

    def subjects(**probs):
        chosen.clear()
        data = SyntheticData({**cfg, **probs})
        meta = [data.simulate(s, setting)[1]["subject"] for s in seeds]
        assert meta == [c[0] for c in chosen]
        return np.array(meta), [c[1] for c in chosen]

    mixed, fov = subjects(phantom_p=0.3, real_p=0.2)
    share = {k: float(np.mean(mixed == k)) for k in ("brain", "phantom", "real")}
    assert share == pytest.approx({"brain": 0.5, "phantom": 0.3, "real": 0.2}, abs=0.03)
    # adding real_p leaves every phantom (and its field of view) as it was and turns heads into real slices only
    phantoms_only, fov_only = subjects(phantom_p=0.3)
    assert np.array_equal(mixed == "phantom", phantoms_only == "phantom") and fov == fov_only
    assert set(phantoms_only[mixed == "real"]) == {"brain"}
    assert set(subjects(phantom_p=0.5, real_p=0.5)[0]) == {"phantom", "real"}
    for bad in ({"real_p": -0.1}, {"real_p": 1.5}, {"real_p": "often"}, {"real_p": None},
                {"phantom_p": 0.7, "real_p": 0.4}):
        with pytest.raises(DataConfigError, match="real_p"):
            SyntheticData({**cfg, **bad})
    # real_max_upsampling reaches the simulator with the real subjects only; it must be >= 1 (or null)
    chosen.clear(), upsampling.clear()
    data = SyntheticData({**cfg, "phantom_p": 0.3, "real_p": 0.3, "real_max_upsampling": 1.25})
    kinds = [data.simulate(s, setting)[1]["subject"] for s in seeds[:300]]
    assert "real" in kinds and [c[0] for c in chosen] == kinds
    assert upsampling == [1.25 if k == "real" else None for k in kinds]
    for bad in (0.5, "twice", float("inf")):
        with pytest.raises(DataConfigError, match="real_max_upsampling"):
            SyntheticData({**cfg, "real_max_upsampling": bad})


def test_folds_go_to_template_heads_only_with_their_probability(monkeypatch):
    cfg = {**SMALL, "shapes": [[48, 48]], "n_coils": [2], "readout_oversampling": [1], "phantom_p": 0.3,
           "real_p": 0.2}
    setting = SyntheticData(cfg).draw_setting(np.random.default_rng(0))
    import workbench.simulate as simulate

    class Params:
        snr = 30.0

    calls = []
    monkeypatch.setattr(simulate, "generate_slice",
                        lambda seed, **kw: calls.append((kw.get("subject", "brain"), kw.get("folds"))) or
                        {"params": Params()})
    seeds = range(TRAIN_SEED_OFFSET, TRAIN_SEED_OFFSET + 2000)
    plain = [SyntheticData(cfg).simulate(s, setting)[1] for s in seeds]
    assert all(c[1] is None for c in calls) and all("folds" not in m for m in plain)  # folds_p 0: as before
    calls.clear()
    folded = [SyntheticData({**cfg, "folds_p": 0.6}).simulate(s, setting)[1] for s in seeds]
    assert [m["subject"] for m in folded] == [m["subject"] for m in plain]  # the subjects are not redrawn
    heads = [c for c in calls if c[0] == "brain"]
    assert all(c[1] is None for c in calls if c[0] != "brain")
    share = np.mean([c[1] is not None for c in heads])
    assert share == pytest.approx(0.6, abs=0.05)
    assert all(0.5 <= c[1] <= 1.0 for c in heads if c[1] is not None)
    assert [m.get("folds") for m in folded] == [None if c[1] is None else round(c[1], 3) for c in calls]
    for bad in (-0.1, 1.5, "often", None):
        with pytest.raises(DataConfigError, match="folds_p"):
            SyntheticData({**cfg, "folds_p": bad})
