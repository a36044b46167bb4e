"""DDP on CPU: `accelerate launch --multi_gpu --num_processes 2` without GPUs trains as one gloo group."""

import json
import subprocess
import sys

from diffusers import DiffusionPipeline
from test_train_support import CONFIGS, logged_losses, subprocess_env


def test_two_process_ddp_on_cpu(tmp_path):
    # `python -m accelerate.commands.launch` is `accelerate launch` without needing the script on PATH.
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
    ]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    command += [
        "-m",
        "ssmgen.train",
        "--config",
        str(CONFIGS / "tiny_unet2d.yaml"),
        "--output_dir",
        str(tmp_path),
    ]
    command += ["--max_steps", "6", "--checkpoint.every_steps", "3"]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 process(es) [MULTI_CPU], global batch 32" in done.stdout

    checkpoint = tmp_path / "checkpoint-6"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    assert json.loads((checkpoint / "training_state.json").read_text())["data_position"] == {
        "epoch": 0,
        "batch": 6,
    }
    losses = logged_losses(tmp_path)
    assert sorted(losses) == list(range(1, 7)) and losses[6] < 0.6 * losses[1]
    pipeline = DiffusionPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipeline(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 8, 8, 1)
