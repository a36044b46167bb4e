"""Crash safety: kill -9 while a checkpoint is being written, resume latest, get the uninterrupted run."""

import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from test_train_support import CONFIGS, all_logged_losses, run_in_process, subprocess_env, tiny_config

from ssmgen.train.checkpointing import TRAINING_STATE, list_checkpoints, resolve_resume

RUN = ["--max_steps", "12", "--checkpoint.every_steps", "4", "--data.random_flip", "true"]


def test_kill_while_writing_a_checkpoint_then_resume_equals_the_uninterrupted_run(tmp_path):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    command = [sys.executable, "-m", "ssmgen.train", "--config", str(CONFIGS / "tiny_unet2d.yaml")]
    command += ["--output_dir", str(crashed), *RUN]
    # The write of checkpoint-8 pauses after its files are in .tmp-checkpoint-8 and before the rename.
    env = subprocess_env(SSMGEN_CHECKPOINT_WRITE_DELAY="8:600")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        half_written = crashed / ".tmp-checkpoint-8" / TRAINING_STATE
        deadline = time.monotonic() + 300
        while not half_written.exists():
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the run never reached the write of checkpoint-8"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert [step for step, _ in list_checkpoints(crashed)] == [4]
    assert resolve_resume("latest", crashed) == crashed / "checkpoint-4"

    run_in_process(tiny_config("unet2d", crashed, *RUN, "--resume", "latest"))
    run_in_process(tiny_config("unet2d", reference, *RUN))

    expected = {step: values[0] for step, values in all_logged_losses(reference).items()}
    assert sorted(expected) == list(range(1, 13))
    for step, values in all_logged_losses(crashed).items():
        assert values == [expected[step]] * len(values), f"step {step}"  # bitwise, including the re-run steps
    assert sorted(all_logged_losses(crashed)) == list(range(1, 13))
    for name in ("model.safetensors", "ema.safetensors"):
        ours, theirs = (
            load_file(crashed / "checkpoint-12" / name),
            load_file(reference / "checkpoint-12" / name),
        )
        assert all(ours[k].equal(theirs[k]) for k in theirs), name
    assert not any(p.name.startswith(".tmp") for p in crashed.iterdir())
    # Starting afresh over a run's checkpoints is refused rather than mixing two runs.
    with pytest.raises(ValueError, match="already holds checkpoints; pass --resume latest"):
        run_in_process(tiny_config("unet2d", crashed, *RUN))


def test_resume_only_accepts_complete_checkpoints(tmp_path):
    (tmp_path / ".tmp-checkpoint-6").mkdir()
    (tmp_path / ".tmp-checkpoint-6" / TRAINING_STATE).write_text("{}")
    (tmp_path / "checkpoint-5").mkdir()  # no training_state.json: not a checkpoint the loop wrote
    assert resolve_resume("latest", tmp_path) is None
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / TRAINING_STATE).write_text("{}")
    assert resolve_resume("latest", tmp_path) == tmp_path / "checkpoint-3"
    for bad in (tmp_path / ".tmp-checkpoint-6", tmp_path / "checkpoint-5"):
        with pytest.raises(ValueError, match="is not a complete checkpoint folder"):
            resolve_resume(str(bad), tmp_path)
