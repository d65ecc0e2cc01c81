"""Training: 2-process DDP with gloo (ranks stay identical and match one process with the same global batch),
exact resume from a checkpoint, and the `workbench train` command with a YAML config."""

import json
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from workbench.nn.train import train

TINY_XPDNET = {
    "model": "xpdnet",
    "architecture": {"n_iter": 1, "n_primal": 2,
                     "image_net": {"n_filters": 4, "n_scales": 1, "n_convs_per_scale": 1, "n_first_convs": 1},
                     "sens_net": {"chans": 2, "num_pool_layers": 1}},
    "data": {"kind": "synthetic", "shapes": [[40, 40]], "n_coils": [1, 3], "readout_oversampling": [1], "n_val": 1},
    "steps": 2,
    "batch_size": 1,
    "optim": {"lr": 1e-3, "warmup_steps": 0},
    "validation": {"n": 0},
    "checkpoint_every": 0,
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, result_dir, config):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    summary = train(config, out, device="cpu", progress=False, log=lambda _: None)
    state = {k: v.contiguous() for k, v in summary["model"].state_dict().items()}
    save_file(state, os.path.join(result_dir, f"rank{rank}.safetensors"))
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"losses": summary["losses"], "world_size": summary["world_size"]}, f)


def test_ddp_two_processes_gloo(tmp_path):
    config = {**TINY_XPDNET, "batch_size": 1}
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "run"), str(tmp_path), config), nprocs=2,
             join=True)
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"parameter {k} differs between ranks"
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert info[0]["world_size"] == 2 and all(math.isfinite(v) for v in info[0]["losses"])
    assert info[0]["losses"] == info[1]["losses"]  # the displayed loss is the mean over ranks
    # DDP with 2 x 1 item = one process with the same 2 items per step (gradients averaged over ranks)
    single = train({**config, "batch_size": 2}, tmp_path / "single", device="cpu", progress=False,
                   log=lambda _: None)
    for k, v in single["model"].state_dict().items():
        torch.testing.assert_close(r0[k], v, atol=1e-5, rtol=1e-4)
    sidecar = json.loads((tmp_path / "run" / "xpdnet.json").read_text())
    assert sidecar["training"]["world_size"] == 2 and sidecar["training"]["steps"] == 2


def test_resume_matches_uninterrupted_run(tmp_path):
    config = {**TINY_XPDNET, "steps": 3, "optim": {"lr": 1e-3, "warmup_steps": 1}}
    full = train(config, tmp_path / "full", progress=False, log=lambda _: None)
    part = train(config, tmp_path / "part", stop_after=1, progress=False, log=lambda _: None)
    assert part["steps_done"] == 1 and not part["finished"]
    rest = train(config, tmp_path / "part", resume=True, progress=False, log=lambda _: None)
    assert rest["steps_done"] == 3 and rest["finished"]
    a, b = full["model"].state_dict(), rest["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert part["losses"] + rest["losses"] == full["losses"]
    # and the weights really moved away from the initialisation
    torch.manual_seed(0)
    from workbench.nn import build_model

    init = build_model("xpdnet", config["architecture"]).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a)


def test_data_worker_processes_train_the_same_weights(tmp_path):
    """The coming steps' data made in two worker processes: the same batches in the same order as the one
    background thread makes them, so the same losses and bit-identical weights (and a resume with workers
    continues as without)."""
    config = {**TINY_XPDNET, "steps": 4, "optim": {"lr": 1e-3, "warmup_steps": 1}}
    quiet = {"progress": False, "log": lambda _: None}
    thread = train(config, tmp_path / "thread", **quiet)
    procs = train(config, tmp_path / "procs", data_workers=2, stop_after=2, **quiet)
    assert procs["steps_done"] == 2
    procs = train(config, tmp_path / "procs", data_workers=2, resume=True, **quiet)
    assert procs["finished"]
    a, b = thread["model"].state_dict(), procs["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert thread["losses"][2:] == procs["losses"]
    with pytest.raises(Exception, match="data_workers"):
        train(config, tmp_path / "bad", data_workers=-1, **quiet)


def test_train_command_with_yaml_config(tmp_path, capsys):
    from workbench.cli import main

    yaml = pytest.importorskip("yaml")
    cfg = {**TINY_XPDNET, "model": "unet", "architecture": {"chans": 4, "num_pool_layers": 1},
           "validation": {"n": 1}}
    path = tmp_path / "unet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["train", "unet", "--config", str(path), "--out", str(out), "--steps", "1", "--quiet",
                 "--data-workers", "1"]) == 0
    side = json.loads((out / "unet.json").read_text())
    for key in ("architecture", "training", "command", "validation", "wall_time_s", "device", "sha256"):
        assert key in side, key
    assert side["training"]["steps"] == 1 and side["training"]["sampling"]["accelerations"] == [4.0, 8.0]
    assert side["training"]["data"]["kind"] == "synthetic"
    assert "psnr" in side["validation"]["all"] and side["command"].startswith("workbench train unet")
    # a config for another model is refused with a message naming both
    assert main(["train", "xpdnet", "--config", str(path), "--out", str(out)]) == 1
    assert "not 'xpdnet'" in capsys.readouterr().err


def test_init_from_weights_fine_tunes_and_is_recorded(tmp_path):
    from workbench.nn.train import TrainingError
    from workbench.nn.weights import file_sha256, load_weights

    quiet = {"progress": False, "log": lambda _: None}
    first = train(TINY_XPDNET, tmp_path / "first", **quiet)
    weights = first["weights"]
    # a zero learning rate leaves the loaded weights exactly as they were: they were loaded, not re-drawn
    frozen = {**TINY_XPDNET, "steps": 1, "seed": 7, "optim": {"lr": 0.0, "warmup_steps": 0}}
    tuned = train(frozen, tmp_path / "tuned", init_from=weights, **quiet)
    loaded, _ = load_weights(weights)
    state = tuned["model"].state_dict()
    assert all(torch.equal(state[k], loaded[k]) for k in loaded)
    side = json.loads((tmp_path / "tuned" / "xpdnet.json").read_text())
    init = side["training"]["initialised_from"]
    assert init["sha256"] == file_sha256(weights) and init["steps"] == 2
    # a resumed fine-tuning run keeps the record
    part = train({**TINY_XPDNET, "steps": 2}, tmp_path / "part", init_from=weights, stop_after=1, **quiet)
    assert not part["finished"]
    train({**TINY_XPDNET, "steps": 2}, tmp_path / "part", resume=True, **quiet)
    side = json.loads((tmp_path / "part" / "xpdnet.json").read_text())
    assert side["training"]["initialised_from"]["sha256"] == file_sha256(weights)
    # weights of another model are refused with the file's name
    unet = train({**TINY_XPDNET, "model": "unet", "architecture": {"chans": 4, "num_pool_layers": 1}},
                 tmp_path / "unet", **quiet)["weights"]
    with pytest.raises(TrainingError, match="unet.safetensors: holds unet weights"):
        train(TINY_XPDNET, tmp_path / "bad", init_from=unet, **quiet)


def test_init_without_the_map_refiner_takes_the_image_networks(tmp_path):
    """``refine_maps: false`` from weights that had a refiner: the image networks are loaded exactly (zero
    learning rate), the refiner's tensors are left out; other mismatches are still refused."""
    from workbench.nn.weights import WeightsError, load_weights

    quiet = {"progress": False, "log": lambda _: None}
    weights = train(TINY_XPDNET, tmp_path / "first", **quiet)["weights"]
    arch = {**TINY_XPDNET["architecture"], "refine_maps": False}
    frozen = {**TINY_XPDNET, "architecture": arch, "steps": 1, "optim": {"lr": 0.0, "warmup_steps": 0}}
    tuned = train(frozen, tmp_path / "plain", init_from=weights, **quiet)["model"]
    loaded, _ = load_weights(weights)
    state = tuned.state_dict()
    assert not any(k.startswith("sens_net.") for k in state)
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    assert any(k.startswith("sens_net.") for k in loaded)
    wider = {**frozen, "architecture": {**arch, "n_primal": 3}}
    with pytest.raises(WeightsError, match="do not fit"):
        train(wider, tmp_path / "wider", init_from=weights, **quiet)


def test_init_with_wider_image_networks_starts_from_the_same_network(tmp_path):
    """``--init`` into more filters: the widened network reconstructs what the file's does (the function is
    kept, :meth:`MWCNN.widened_state`), and a file with more filters than the config is refused."""
    from workbench.nn.batch import collate
    from workbench.nn.data import SyntheticData
    from workbench.nn.weights import WeightsError, load_model

    quiet = {"progress": False, "log": lambda _: None}
    narrow = train(TINY_XPDNET, tmp_path / "narrow", **quiet)["weights"]
    arch = {**TINY_XPDNET["architecture"], "image_net": {**TINY_XPDNET["architecture"]["image_net"], "n_filters": 6}}
    frozen = {**TINY_XPDNET, "architecture": arch, "steps": 1, "optim": {"lr": 0.0, "warmup_steps": 0}}
    wide = train(frozen, tmp_path / "wide", init_from=narrow, **quiet)["model"].eval()
    assert wide.image_nets[0].first[0].weight.shape[0] == 6
    small, _ = load_model(narrow)
    (batch,) = collate(SyntheticData(TINY_XPDNET["data"]).batch(0))
    with torch.no_grad():
        torch.testing.assert_close(wide(batch)[0], small.eval()(batch)[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(WeightsError, match="do not fit"):
        train(TINY_XPDNET, tmp_path / "back", init_from=tmp_path / "wide" / "xpdnet.safetensors", **quiet)


def test_init_with_more_iterations_starts_from_the_same_network_and_trains_the_new_ones(tmp_path):
    """``--init`` into a deeper unroll: the iterations the file lacks start as identities after its own, so the
    deeper network reconstructs what the file's does (:meth:`MWCNN.zero_output_state`); a training step reaches
    their output layers; a file of more iterations than the config is refused."""
    from workbench.nn.batch import collate
    from workbench.nn.data import SyntheticData
    from workbench.nn.weights import WeightsError, load_model

    quiet = {"progress": False, "log": lambda _: None}
    two = {**TINY_XPDNET, "architecture": {**TINY_XPDNET["architecture"], "n_iter": 2}}
    shallow = train(two, tmp_path / "two", **quiet)["weights"]
    four = {**two, "architecture": {**two["architecture"], "n_iter": 4}}
    frozen = {**four, "steps": 1, "optim": {"lr": 0.0, "warmup_steps": 0}}
    deep = train(frozen, tmp_path / "four", init_from=shallow, **quiet)["model"].eval()
    small, _ = load_model(shallow)
    assert len(deep.image_nets) == 4 and not deep.image_nets[3].out.weight.detach().any()
    torch.testing.assert_close(deep.image_nets[1].out.weight, small.image_nets[1].out.weight)
    (batch,) = collate(SyntheticData(TINY_XPDNET["data"]).batch(0))
    with torch.no_grad():
        torch.testing.assert_close(deep(batch)[0], small.eval()(batch)[0], atol=1e-5, rtol=1e-4)
    trained = train({**four, "steps": 1}, tmp_path / "trained", init_from=shallow, **quiet)["model"]
    assert trained.image_nets[3].out.weight.detach().any()
    with pytest.raises(WeightsError, match="4 unrolled image networks in the file, 2 in the config"):
        train(two, tmp_path / "back", init_from=tmp_path / "four" / "xpdnet.safetensors", **quiet)


def test_init_misfit_names_what_differs():
    """The words of ``--init``'s refusal (and of a sidecar that does not fit its file): iterations, then the first
    shape, then tensors one side lacks, with the counts."""
    from workbench.nn.weights import misfit

    own = {"image_nets.0.w": (2,), "image_nets.1.w": (2,), "head.w": (3, 3)}
    assert misfit(dict(own), own, "the config") == ""
    assert misfit({"image_nets.0.w": (2,), "head.w": (3, 3)}, own, "the config") == (
        "1 unrolled image networks in the file, 2 in the config; 1 missing, 0 unexpected, 0 of another shape")
    assert misfit({**own, "tail.b": (1,)}, own, "the config").startswith("not in the config: tail.b; 0 missing, 1")
    assert misfit({k: v for k, v in own.items() if k != "head.w"}, own, "the config").startswith(
        "missing from the file: head.w; 1 missing")
    assert misfit({**own, "head.w": (3, 4)}, own, "the config").startswith(
        "head.w is [3, 4] in the file, [3, 3] in the config")


def test_average_of_weight_files_is_their_mean_and_is_recorded(tmp_path, capsys):
    from workbench.cli import main
    from workbench.nn.weights import file_sha256, load_model

    quiet = {"progress": False, "log": lambda _: None}
    a = train({**TINY_XPDNET, "seed": 1}, tmp_path / "a", **quiet)["weights"]
    b = train({**TINY_XPDNET, "seed": 2}, tmp_path / "b", **quiet)["weights"]
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY_XPDNET, "validation": {"n": 1}}))
    out = tmp_path / "soup"
    assert main(["train", "xpdnet", "--config", str(cfg), "--average", a, b, "--out", str(out), "--quiet"]) == 0
    # independent of the code under test: the two files' tensors read directly and averaged here
    ta, tb = load_file(a), load_file(b)
    assert any(not torch.equal(ta[k], tb[k]) for k in ta if ta[k].is_floating_point())  # two different runs
    model, side = load_model(out / "xpdnet.safetensors")  # hash and architecture checked
    state = model.state_dict()
    for k in ta:
        expect = (ta[k].double() + tb[k].double()) / 2 if ta[k].is_floating_point() else ta[k]
        assert torch.allclose(state[k].double(), expect, atol=1e-7), k
    sources = side["training"]["averaged_from"]
    assert [s["sha256"] for s in sources] == [file_sha256(a), file_sha256(b)]
    assert [s["seed"] for s in sources] == [1, 2] and sources[0]["steps"] == 2
    assert "psnr" in side["validation"]["all"] and "--average" in side["command"]
    # one file is not an average; another model's weights are refused with the file's name
    assert main(["train", "xpdnet", "--config", str(cfg), "--average", a, "--out", str(out)]) == 1
    assert "two or more" in capsys.readouterr().err
    unet = train({**TINY_XPDNET, "model": "unet", "architecture": {"chans": 4, "num_pool_layers": 1}},
                 tmp_path / "unet", **quiet)["weights"]
    assert main(["train", "xpdnet", "--config", str(cfg), "--average", a, unet, "--out", str(out)]) == 1
    assert "unet.safetensors: holds unet weights" in capsys.readouterr().err
    assert main(["train", "xpdnet", "--config", str(cfg), "--average", a, b, "--init", a]) == 1
    assert "cannot be combined with --init" in capsys.readouterr().err
    # the same tensors under another architecture (its starting image's CG iterations) are not the same model
    other = {**TINY_XPDNET, "architecture": {**TINY_XPDNET["architecture"], "init_cg_iter": 3}}
    c = train(other, tmp_path / "c", **quiet)["weights"]
    assert main(["train", "xpdnet", "--config", str(cfg), "--average", a, c, "--out", str(out)]) == 1
    assert "xpdnet.safetensors: its architecture is not the config's" in capsys.readouterr().err
