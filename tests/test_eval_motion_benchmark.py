"""benchmarks/fid_motion.py on a tiny saved MotionMambaPipeline and tiny synthetic motions.

The oracle is ``evaluate_motion`` called directly with the same protocol and a generator that runs the
pipeline as documented; the benchmark must reproduce its table and add the row's bookkeeping. Both
evaluator paths are exercised: the native one (trained by the script, then reused) and the original T2M
one loaded from files in the original layout (random weights).
"""

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_t2m import ORIGINAL_LAYOUT
from transformers import BertConfig, BertModel, BertTokenizer

from ssmgen.data.motion import Text2MotionDataset, build_synthetic_dataset
from ssmgen.eval.motion import evaluate_motion
from ssmgen.eval.t2m_evaluator import T2MEvaluator
from ssmgen.eval.text_motion_evaluator import ContrastiveTextMotionEvaluator
from ssmgen.models import MotionMambaModel, MotionVAE
from ssmgen.pipelines import MotionMambaPipeline
from ssmgen.pipelines.motion_mamba import mld_ddim_scheduler

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "fid_motion.py"
# Small on purpose (the T2M evaluator's 1024-wide GRUs are slow on a CPU): short motions, groups of 8.
PROTOCOL = ["--split", "all", "--max-frames", "100", "--repeats", "2", "--steps", "2", "--guidance-scale", "2.0"]
PROTOCOL += ["--group-size", "8", "--diversity-pairs", "5", "--mm-captions", "2", "--mm-repeats", "3"]
PROTOCOL += ["--mm-pairs", "2", "--no-progress", "--device", "cpu"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("fid_motion_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion-benchmark")
    data = build_synthetic_dataset(root / "synthetic", 30, seed=1)
    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "person", "walks", "jumps", "waves"]
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    model = MotionMambaModel.from_preset("tiny", in_channels=32, scan_backend="torch")
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 0.05)  # a non-zero (untrained) denoiser
    pipe = MotionMambaPipeline(
        model,
        mld_ddim_scheduler(),
        BertModel(config).eval(),
        BertTokenizer(vocab={w: i for i, w in enumerate(words)}),
        vae=MotionVAE.from_preset("tiny").eval(),
        feature_mean=np.load(data / "Mean.npy"),
        feature_std=np.load(data / "Std.npy"),
    )
    pipe.save_pretrained(root / "pipeline")
    return root, data


def oracle_table(pipeline_dir, data, evaluator):
    """evaluate_motion with the benchmark's protocol, generating through the saved pipeline."""
    pipe = MotionMambaPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)

    def generate(captions, lengths, generator):
        out = pipe(captions, num_frames=lengths.tolist(), num_inference_steps=2, guidance_scale=2.0,
                   generator=generator, output_type="pt")  # fmt: skip
        return out.features

    dataset = Text2MotionDataset(data, "all", max_length=100, normalize=False, seed=0)
    return evaluate_motion(generate, dataset, evaluator, repeats=2, group_size=8, diversity_pairs=5,
                           mm_num_captions=2, mm_repeats=3, mm_pairs=2, seed=0, progress=False)  # fmt: skip


def test_native_evaluator_table_matches_evaluate_motion(assets, tmp_path):
    root, data = assets
    out = tmp_path / "rows.jsonl"
    args = ["--pipeline", str(root / "pipeline"), "--data", str(data), "--dataset", "synthetic_motion"]
    args += ["--evaluator", "native", "--native-evaluator", str(tmp_path / "evaluator"), "--evaluator-epochs", "1"]
    row = load_benchmark().main([*args, *PROTOCOL, "--out", str(out)])
    assert (tmp_path / "evaluator" / "config.json").is_file()  # trained once, saved for the next runs

    evaluator = ContrastiveTextMotionEvaluator.from_pretrained(tmp_path / "evaluator").eval()
    expected = oracle_table(root / "pipeline", data, evaluator)
    assert set(row["metrics"]) == set(expected)
    for name, (mean, interval) in expected.items():
        assert row["metrics"][name] == pytest.approx([mean, interval], rel=1e-6, abs=1e-9), name
    assert row["denoiser"] == "MotionMambaModel" and row["sampler"] == "DDIMScheduler" and row["repeats"] == 2
    assert row["num_motions"] == len(Text2MotionDataset(data, "all", max_length=100, normalize=False))
    assert row["aits_s"] > 0 and json.loads(out.read_text().splitlines()[-1])["metrics"] == row["metrics"]
    # the real motions retrieve their own captions no worse than chance (1/32 per group for top-1)
    assert 0 <= row["metrics"]["gt_r_precision_top_1"][0] <= 1


def test_t2m_evaluator_from_original_files(assets, tmp_path):
    root, data = assets
    generator = torch.Generator().manual_seed(0)
    checkpoint = {
        name: {key: torch.randn(shape, generator=generator) * 0.05 for key, shape in layout.items()}
        for name, layout in ORIGINAL_LAYOUT.items()
    }
    torch.save(checkpoint, tmp_path / "finest.tar")
    rng = np.random.default_rng(2)
    np.save(tmp_path / "mean.npy", rng.normal(size=263).astype(np.float32))
    np.save(tmp_path / "std.npy", rng.uniform(0.5, 2.0, size=263).astype(np.float32))
    glove = tmp_path / "glove"
    glove.mkdir()
    vocabulary = ["unk", "sos", "eos", "a", "person", "walk", "jump", "wave"]
    np.save(glove / "our_vab_data.npy", rng.normal(size=(len(vocabulary), 300)).astype(np.float32))
    (glove / "our_vab_words.pkl").write_bytes(pickle.dumps(vocabulary))
    (glove / "our_vab_idx.pkl").write_bytes(pickle.dumps({w: i for i, w in enumerate(vocabulary)}))

    files = ["--t2m-checkpoint", str(tmp_path / "finest.tar"), "--t2m-mean", str(tmp_path / "mean.npy")]
    files += ["--t2m-std", str(tmp_path / "std.npy"), "--glove-dir", str(glove)]
    args = ["--pipeline", str(root / "pipeline"), "--data", str(data), "--dataset", "synthetic_motion"]
    row = load_benchmark().main([*args, "--evaluator", "t2m", *files, *PROTOCOL, "--out", str(tmp_path / "r.jsonl")])

    evaluator = T2MEvaluator.from_files(tmp_path / "finest.tar", tmp_path / "mean.npy", tmp_path / "std.npy", glove)
    expected = oracle_table(root / "pipeline", data, evaluator)
    for name, (mean, interval) in expected.items():
        assert row["metrics"][name] == pytest.approx([mean, interval], rel=1e-5, abs=1e-7), name


def test_missing_evaluator_files_are_named(assets, capsys):
    root, data = assets
    benchmark = load_benchmark()
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--pipeline", str(root), "--data", str(data), "--evaluator", "t2m", "--t2m-std", "s"])
    assert "--evaluator t2m needs --t2m-checkpoint, --t2m-mean, --glove-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--pipeline", str(root), "--data", str(data), "--evaluator", "native"])
    assert "--evaluator native needs --native-evaluator" in capsys.readouterr().err
