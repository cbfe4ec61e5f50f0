"""Checkpoints that survive: a save that fails on a full disk is a clear error that leaves the older
checkpoints as they were; a damaged newest checkpoint is named and passed over for the next older one;
checkpoints go where `checkpoint.dir` says and a run on another machine resumes from there. The whole
stack (Ray, vLLM, DeepSpeed, a real full tmpfs) is in test_checkpoint_survival_e2e.py."""

import errno
import os
import shutil

import pytest
import torch

import system.checkpoint
from actors.calls import ActorFailure
from launcher.lifecycle import check_resume, make_run_dir, save_checkpoint
from system.checkpoint import (MANIFEST, CheckpointError, CheckpointSaveError, DamagedCheckpoint,
                               check_checkpoint, list_checkpoints, newest_complete_checkpoint, save_driver_state,
                               verify_manifest, write_checkpoint)
from system.config.grpo import load_config


class Ranks:
    """What a policy rank writes into a checkpoint folder (the tiny model as policy/, DeepSpeed's state),
    for the protocol around it; `fail(folder)`, if given, runs half-way, as a write that breaks."""

    def __init__(self, model: str, fail=None):
        self.model, self.fail = model, fail

    def run(self, method: str, folder: str, phase: str) -> list:
        assert (method, phase) == ("save_checkpoint", "checkpoint")
        shutil.copytree(self.model, os.path.join(folder, "policy"))
        os.makedirs(os.path.join(folder, "deepspeed", "state"))
        if self.fail:
            self.fail(folder)
        torch.save({"optimizer": torch.arange(1000.0)},
                   os.path.join(folder, "deepspeed", "state", "mp_rank_00_model_states.pt"))
        return [None]


def write_into_dev_full(folder: str) -> None:
    """A real full disk: the kernel answers the write with ENOSPC (/dev/full)."""
    os.symlink("/dev/full", os.path.join(folder, "deepspeed", "state", "optim_states.pt"))
    with open(os.path.join(folder, "deepspeed", "state", "optim_states.pt"), "wb") as f:
        f.write(b"\0" * 2**20)


def save(root: str, step: int, model: str, fail=None, keep_last: int = 5) -> str:
    def write(folder: str) -> None:
        Ranks(model, fail).run("save_checkpoint", folder, phase="checkpoint")
        save_driver_state(folder, step, {"epoch": 0, "position": 4 * step}, "no-metrics.jsonl")

    return write_checkpoint(root, step, keep_last, write, passes=(ActorFailure,))


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "shared" / "ckpts"
    path.mkdir(parents=True)
    return str(path)


# A full disk while saving

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_while_saving_is_a_clear_error_and_the_older_checkpoint_stays_resumable(root, tiny_model):
    first = save(root, 1, tiny_model)
    with pytest.raises(CheckpointSaveError) as error:
        save(root, 2, tiny_model, fail=write_into_dev_full)
    message = str(error.value)
    assert message.startswith(f"no space left on device while writing checkpoint step 2 to {root}/step_000002 "
                              "(OSError: [Errno 28] No space left on device")
    assert "MiB free there). The run ends; the older checkpoints are untouched (newest: step_000001)" in message
    assert os.listdir(root) == ["step_000001"]  # the partial folder is gone
    assert verify_manifest(first)  # every byte as saved
    assert newest_complete_checkpoint(root, tiny_model) == first


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EDQUOT, "disk quota exceeded"),
                                         (errno.EROFS, "read-only file system")])
def test_a_failed_write_of_the_drivers_state_names_the_cause(root, tiny_model, monkeypatch, code, words):
    save(root, 1, tiny_model)

    def refuse(obj, path):
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(system.checkpoint.torch, "save", refuse)  # the driver's rng.pt
    with pytest.raises(CheckpointSaveError, match=f"^{words} while writing checkpoint step 2 to {root}/step_000002 "):
        save(root, 2, tiny_model)
    assert os.listdir(root) == ["step_000001"]


def test_an_error_raised_in_a_rank_is_named_by_the_ranks_own_exception(root, tiny_model):
    from ray.exceptions import RayTaskError

    save(root, 1, tiny_model)
    cause = OSError(errno.ENOSPC, "No space left on device", "/x/model.safetensors")
    remote = RayTaskError("PolicyTrainer.save_checkpoint", "Traceback ...\nOSError: ...", cause)

    def fail(folder):
        raise remote.as_instanceof_cause()  # as ray.get raises what an actor raised

    with pytest.raises(CheckpointSaveError, match="^no space left on device while writing checkpoint step 2 .*"
                                                  "OSError: \\[Errno 28\\] No space left on device: "):
        save(root, 2, tiny_model, fail=fail)
    assert list_checkpoints(root) == [os.path.join(root, "step_000001")]


def test_a_rank_that_died_while_saving_is_left_to_recovery(root, tiny_model):
    def die(folder):
        raise ActorFailure(["policy-0"], "checkpoint", "the actor died (RayActorError)")

    with pytest.raises(ActorFailure):
        save(root, 1, tiny_model, fail=die)
    assert os.listdir(root) == []


def test_the_first_save_failing_says_there_is_no_older_checkpoint(root, tiny_model):
    with pytest.raises(CheckpointSaveError, match="no space left on device .*; no older checkpoint$"):
        save(root, 1, tiny_model, fail=write_into_dev_full)


# A damaged checkpoint

def test_the_manifest_lists_every_file_written(root, tiny_model):
    path = save(root, 1, tiny_model)
    files = system.checkpoint.checkpoint_files(path)
    assert MANIFEST not in files and "policy/model.safetensors" in files and "rng.pt" in files
    assert verify_manifest(path)


def damage_file(path: str, name: str, how: str) -> None:
    file = os.path.join(path, name)
    data = open(file, "rb").read()
    if how == "cut":
        data = data[: len(data) // 2]
    elif how == "flip the last byte":
        data = data[:-1] + bytes([data[-1] ^ 1])
    with open(file, "wb") as f:
        f.write(data)
    if how == "remove":
        os.remove(file)


@pytest.mark.parametrize("name, how, said", [
    ("policy/model.safetensors", "cut", "policy/model.safetensors has 6588104 bytes, 13176208 when saved"),
    ("deepspeed/state/mp_rank_00_model_states.pt", "remove", "deepspeed/state/mp_rank_00_model_states.pt is missing"),
    ("state.json", "flip the last byte", "state.json differs from the file saved \\(checksum\\)"),
    ("policy/tokenizer.json", "cut", "policy/tokenizer.json has"),  # a file no other check reads
])
def test_a_damaged_checkpoint_names_the_file_and_what_is_wrong(root, tiny_model, name, how, said):
    path = save(root, 1, tiny_model)
    damage_file(path, name, how)
    with pytest.raises(DamagedCheckpoint, match=f"checkpoint {path} is damaged: {said}"):
        check_checkpoint(path, tiny_model)


def test_a_large_file_is_checked_by_its_size_and_ends(root, tiny_model, monkeypatch):
    """The cost trade-off: above WHOLE_CHECKSUM_BYTES only the first and last MiB are read, so a change in
    the middle of a weights file goes unseen by the manifest (safetensors' header check still runs)."""
    monkeypatch.setattr(system.checkpoint, "WHOLE_CHECKSUM_BYTES", 2**16)
    monkeypatch.setattr(system.checkpoint, "EDGE_BYTES", 2**12)
    path = save(root, 1, tiny_model)
    damage_file(path, "policy/model.safetensors", "flip the last byte")
    with pytest.raises(DamagedCheckpoint, match="policy/model.safetensors differs from the file saved"):
        verify_manifest(path)
    damage_file(path, "policy/model.safetensors", "flip the last byte")  # back as it was
    weights = os.path.join(path, "policy", "model.safetensors")
    with open(weights, "r+b") as f:
        f.seek(os.path.getsize(weights) // 2)
        f.write(b"\xff\xff")
    assert verify_manifest(path)


def test_an_unreadable_manifest_is_damage(root, tiny_model):
    path = save(root, 1, tiny_model)
    with open(os.path.join(path, MANIFEST), "w") as f:
        f.write('{"files": {"rng.pt": {"size"')
    with pytest.raises(DamagedCheckpoint, match="manifest.json is unreadable \\(JSONDecodeError"):
        check_checkpoint(path, tiny_model)


def test_resume_true_passes_over_a_damaged_newest_checkpoint_with_a_warning(root, tiny_model, tmp_path):
    for step in (1, 2, 3):
        save(root, step, tiny_model)
    damage_file(os.path.join(root, "step_000003"), "policy/model.safetensors", "cut")
    os.remove(os.path.join(root, "step_000002", "rng.pt"))
    cfg = load_config(None, ["resume=true", f"checkpoint.dir={root}"])
    with pytest.warns(UserWarning) as warned:
        assert check_resume(cfg, str(tmp_path / "run"), tiny_model) == os.path.join(root, "step_000001")
    assert [str(w.message) for w in warned] == [
        f"checkpoint {root}/step_000003 is damaged: policy/model.safetensors has 6588104 bytes, 13176208 when "
        "saved; trying the next older checkpoint",
        f"checkpoint {root}/step_000002 is damaged: rng.pt is missing; trying the next older checkpoint"]
    os.remove(os.path.join(root, "step_000001", "state.json"))
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match=f"no complete checkpoint in {root}$"):
        check_resume(cfg, str(tmp_path / "run"), tiny_model)


def test_resume_to_a_damaged_checkpoint_by_path_is_an_error_naming_the_file(root, tiny_model, tmp_path):
    path = save(root, 1, tiny_model)
    damage_file(path, "rng.pt", "cut")
    with pytest.raises(DamagedCheckpoint, match=f"checkpoint {path} is damaged: rng.pt has"):
        check_resume(load_config(None, [f"resume={path}"]), str(tmp_path / "run"), tiny_model)


def test_a_checkpoint_saved_before_manifests_still_resumes_and_is_checked_as_far_as_it_can(root, tiny_model):
    for step in (1, 2):
        os.remove(os.path.join(save(root, step, tiny_model), MANIFEST))
    assert newest_complete_checkpoint(root, tiny_model) == os.path.join(root, "step_000002")
    damage_file(os.path.join(root, "step_000002"), "policy/model.safetensors", "cut")  # its header is still read
    with pytest.warns(UserWarning, match="step_000002 is damaged \\(SafetensorError"):
        assert newest_complete_checkpoint(root, tiny_model) == os.path.join(root, "step_000001")


def test_a_checkpoint_of_another_model_is_an_error_not_passed_over(root, tiny_model, smollm2):
    save(root, 1, tiny_model)
    with pytest.raises(CheckpointError, match="of another model"):
        newest_complete_checkpoint(root, smollm2)


# A location the user names

def test_checkpoints_go_to_checkpoint_dir_and_a_run_elsewhere_resumes_from_there(root, tiny_model, tmp_path):
    here = load_config(None, [f"logging.output_dir={tmp_path / 'a'}", "logging.run_name=run",
                              f"checkpoint.dir={root}", "checkpoint.keep_last=2"])
    run_dir = make_run_dir(here, None)
    for step in (1, 2, 3):
        save_checkpoint(step, here, Ranks(tiny_model), {"epoch": 0, "position": step}, run_dir)
    assert sorted(os.listdir(root)) == ["step_000002", "step_000003"]  # keep_last
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))

    # Another machine: another output folder, the same checkpoint.dir (or resume= one checkpoint of it).
    there = load_config(None, [f"logging.output_dir={tmp_path / 'b'}", f"checkpoint.dir={root}", "resume=true"])
    new_run = make_run_dir(there, None)
    assert os.path.dirname(new_run) == str(tmp_path / "b")
    assert check_resume(there, new_run, tiny_model) == os.path.join(root, "step_000003")
    one = load_config(None, [f"logging.output_dir={tmp_path / 'b'}", f"resume={root}/step_000002"])
    assert os.path.dirname(make_run_dir(one, None)) == str(tmp_path / "b")  # not the checkpoints' parent
    assert check_resume(one, new_run, tiny_model) == f"{root}/step_000002"


def test_a_checkpoint_in_a_run_directory_still_resumes_that_run(tmp_path):
    path = tmp_path / "runs" / "mine" / "checkpoints" / "step_000004"
    path.mkdir(parents=True)
    assert make_run_dir(load_config(None, [f"resume={path}"]), None) == str(tmp_path / "runs" / "mine")
