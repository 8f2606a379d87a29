"""`flan-jax plan`: per-device memory from shapes, checked by hand on a tiny model and for scale on XXL."""
from __future__ import annotations

import pytest

from flan_jax import optimizers, plan
from flan_jax.models import EncoderDecoderModel, T5Config

# A tiny T5 v1.1 (gated-GELU) that the arithmetic below is done for.
TINY = dict(vocab_size=128, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_encoder_layers=2,
            num_decoder_layers=2, mlp_activations=("gelu", "linear"), dtype="float32")
LENGTHS = {"inputs": 32, "targets": 16}

# Parameters, counted by hand:
#   token_embedder 128*32 = 4096; logits_dense 32*128 = 4096; relpos_bias 32 buckets * 4 heads = 128 per stack
#   encoder layer: q,k,v,o 4*32*32 = 4096, wi_0/wi_1 2*32*64 = 4096, wo 64*32 = 2048, 2 norms 64   -> 10304
#   decoder layer: self + cross attention 8192, MLP 6144, 3 norms 96                               -> 14432
#   final norms 2*32
TINY_PARAMS = 4096 + 4096 + 2 * 128 + 2 * 10304 + 2 * 14432 + 2 * 32
# On data=2, model=4 (1-D parameter partitioning) every kernel, the embeddings and the relpos tables split 4 ways
# over 'model' (vocab, joined_kv, mlp, heads all divide by 4); the 12 RMSNorm scales (5 encoder, 7 decoder,
# 32 each) stay whole.
NORMS = 12 * 32
TINY_PARAMS_PER_DEVICE = ((TINY_PARAMS - NORMS) // 4 + NORMS) * 4


@pytest.fixture(scope="session")
def tiny_model():
  return EncoderDecoderModel(T5Config(**TINY))


def test_tiny_parameters_and_adafactor_state_by_hand(tiny_model):
  assert TINY_PARAMS == 57_984
  p = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 4})
  assert p.param_count == TINY_PARAMS
  assert p.params_total == 4 * TINY_PARAMS
  assert p.params == TINY_PARAMS_PER_DEVICE == 59_136
  assert p.gradients == p.params
  # min_dim_size_to_factor=128 > every dim here: each of the 52 parameters keeps a full `v` (sharded as the
  # parameter), and `v_row`, `v_col`, `m` are shape-[1] float32 placeholders; plus the int32 step count.
  assert p.optimizer == TINY_PARAMS_PER_DEVICE + 52 * 3 * 4 + 4


def test_tiny_activations_by_hand(tiny_model):
  # 16 sequences over data=2 -> 8 per device; heads 4/4=1, mlp 64/4=16, vocab 128/4=32 per device; float32.
  # The gated GELU keeps 2 [len, mlp] intermediates besides wi's outputs and the product: gelu's tanh, and
  # gelu(wi_0 x) for wi_1's gradient.
  # Encoder layer (S=32): input 32*32=1024; projections q,k,v 32*3*8=768 + out 1024 + wi 32*2*16=1024
  #   + wo 1024 = 3840; attention probabilities 32*32=1024 + context 256 = 1280; norms+residual 3*1024
  #   + gated product 32*16=512 + intermediates 2*512 = 4608.                      -> 10752 elements
  # Decoder layer (T=16): input 512; projections (384+512) + (128+2*256+512) + 512 + 512 = 3072;
  #   attention (256+128) + (16*32+128) = 1024; elementwise 5*512 + 16*16 + 2*16*16 = 3328.  -> 7936 elements
  # Outside the layers: embeddings + final norms 2*(32+16)*32 = 3072 elements; logits and log-softmax
  #   2*16*32 float32.
  assert plan.mlp_intermediates(("gelu", "linear")) == 2 and plan.mlp_intermediates(("relu",)) == 0
  per_sequence = (2 * 10752 + 2 * 7936 + 3072) * 4 + 2 * 16 * 32 * 4
  p = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 4})
  assert p.activations == 8 * per_sequence == 1_327_104
  assert p.total == p.params + p.optimizer + p.gradients + p.activations

  # Full remat keeps only each layer's input and recomputes one layer at a time (the encoder's is larger:
  # 3840 + 1280 + 4608 = 9728 elements).
  remat = EncoderDecoderModel(T5Config(**TINY, remat_policy="full"))
  q = plan.estimate(remat, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 4})
  assert q.activations == 8 * ((2 * 1024 + 2 * 512 + 9728 + 3072) * 4 + 2 * 16 * 32 * 4) == 540_672
  assert q.params == p.params


def test_heads_per_device_follow_xla_when_the_heads_do_not_split():
  # Flan-T5 small's 6 heads on model=4: the [emb, 6*64] q/k/v kernels split 4 ways; XLA computes 3 heads per
  # device (gathering pairs of the 96-column pieces), as benchmarks/sharding_cost.py's compiled step shows.
  assert plan.heads_per_device(6, 64, 4) == 3 and plan.heads_per_device(6, 64, 2) == 3
  assert plan.heads_per_device(4, 8, 4) == 1 and plan.heads_per_device(64, 64, 8) == 8
  assert plan.heads_per_device(3, 5, 4) == 3  # 15 columns do not split: the kernels and heads stay whole


def test_microbatches_and_bad_meshes(tiny_model):
  one = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 1})
  four = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 1},
                       num_microbatches=4)
  assert four.local_batch == 2 and one.local_batch == 8
  assert four.activations * 4 == one.activations
  with pytest.raises(ValueError, match="does not split"):
    plan.estimate(tiny_model, optimizers.AdafactorConfig(), 10, LENGTHS, {"data": 4, "model": 1})


def test_factored_slots_are_rows_plus_columns():
  # With min_dim_size_to_factor=32 every kernel (all dims >= 32) is factored: v_row + v_col hold one float per
  # row and per column instead of rows*cols; only the norm scales and relpos tables keep a full `v`.
  model = EncoderDecoderModel(T5Config(**TINY))
  p = plan.estimate(model, optimizers.AdafactorConfig(min_dim_size_to_factor=32), 16, LENGTHS,
                    {"data": 1, "model": 1})
  full = plan.estimate(model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 1, "model": 1})
  assert p.optimizer < full.optimizer / 10
  assert p.params == full.params == 4 * TINY_PARAMS


RECIPES = {  # size: (steps, learning rate, topology, NUM_PARTITIONS)
    "small": (98_000, 5e-4, "v4-8", 1), "base": (84_000, 5e-4, "v4-16", 1), "large": (64_000, 5e-4, "v4-32", 1),
    "xl": (38_000, 5e-4, "v4-64", 2), "xxl": (14_000, 1e-4, "v4-256", 8),
}


@pytest.mark.parametrize("size", sorted(RECIPES))
def test_paper_recipes_bind_the_published_settings(size):
  steps, lr, topology, partitions = RECIPES[size]
  plan.load_gin([f"runs/flan_t5_{size}_flan2022.gin"], [])
  assert plan.gin_macro("MIXTURE_OR_TASK_NAME") == "flan2022_submix"
  assert plan.gin_macro("TASK_FEATURE_LENGTHS") == {"inputs": 2048, "targets": 512}
  assert (plan.gin_macro("BATCH_SIZE"), plan.gin_macro("DROPOUT_RATE")) == (64, 0.05)
  assert (plan.gin_macro("LEARNING_RATE"), plan.gin_macro("LEARNING_RATE_SCHEDULE")) == (lr, "constant")
  assert plan.gin_macro("TRAIN_STEPS") == steps
  assert plan.gin_macro("NUM_PARTITIONS") == partitions
  model = plan.gin_macro("MODEL")
  assert model.config.dropout_rate == 0.05 and model.config.dtype == "bfloat16"
  # The stated topology has room for the model axis and a data axis that splits the batch.
  devices = plan.parse_tpu(topology).devices
  assert devices % partitions == 0 and 64 % (devices // partitions) == 0
  text = open(f"gin_configs/runs/flan_t5_{size}_flan2022.gin").read()
  assert f"--topology={topology}" in text and f"--accelerator={topology}" in text


def _plan_cli(capsys, *argv):
  assert plan.main(list(argv)) == 0
  out = capsys.readouterr().out
  rows = {}
  for line in out.splitlines():
    parts = line.split()
    if len(parts) >= 4 and parts[-1] == "B":
      rows[" ".join(parts[:-4])] = int(parts[-2].replace(",", ""))
  return out, rows


def test_plan_cli_on_the_tiny_config_by_hand(capsys):
  # gin_configs/models/flan_t5_tiny.gin: vocab 32128, emb 64, 4 heads of 16, mlp 128, 2+2 layers.
  # token_embedder and logits_dense 32128*64 each; relpos 2*32*4; encoder layers 2*(4*64*64 + 3*64*128 + 2*64);
  # decoder layers 2*(8*64*64 + 3*64*128 + 3*64); final norms 2*64.
  n = 2 * 32128 * 64 + 2 * 32 * 4 + 2 * (16384 + 24576 + 128) + 2 * (32768 + 24576 + 192) + 128
  assert n == 4_310_016
  out, rows = _plan_cli(capsys, "--gin_file=models/flan_t5_tiny.gin", "--gin_file=runs/finetune.gin",
                        "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 32}", "--gin.BATCH_SIZE=8",
                        "--mesh", "data=2,model=4")
  assert f"parameters: {n:,}" in out
  # Split over model=4: everything but the 12 RMSNorm scales of 64 (the relpos tables split by heads).
  assert rows["parameters"] == ((n - 12 * 64) // 4 + 12 * 64) * 4
  assert rows["gradients"] == rows["parameters"]
  assert rows["total"] == sum(rows[k] for k in ("parameters", "optimizer state", "gradients", "activations"))


def test_plan_cli_on_the_xxl_recipe(capsys):
  out, rows = _plan_cli(capsys, "--gin_file=runs/flan_t5_xxl_flan2022.gin", "--topology=v4-256")
  assert "parameters: 11,135,332,352" in out
  assert "mesh data=16, model=8 (128 devices)" in out and "4 sequence(s) per device" in out
  # Parameters split 8 ways over 'model' but for the small replicated norm scales.
  assert 41.48 / 8 < rows["parameters"] / plan.GiB < 41.48 / 8 * 1.01
  # Factored Adafactor: the slots are a tiny fraction of the parameters.
  assert rows["optimizer state"] < rows["parameters"] / 100
  assert "-> fits" in out
  # The model axis (8) spans two hosts of 4 devices: each pair reads one input shard.
  assert "input: 16 shard(s) of 4 rows of the 64-row batch over 32 host(s); shard 0: hosts 0,1; shard 1: hosts 2,3" \
      in out
  # Without remat and model parallelism, XXL does not fit one 32 GiB v4 chip per 8 sequences.
  assert plan.main(["--gin_file=runs/flan_t5_xxl_flan2022.gin", "--gin.REMAT_POLICY='none'",
                    "--gin.NUM_PARTITIONS=1", "--topology=v4-16"]) == 0
  assert "does NOT fit" in capsys.readouterr().out


def test_plan_cli_errors_name_the_problem(capsys):
  assert plan.main(["--gin_file=runs/flan_t5_xl_flan2022.gin", "--topology=v4-64", "--mesh", "data=8,model=8"]) == 2
  assert "devices" in capsys.readouterr().err
  assert plan.main(["--gin_file=runs/no_such.gin"]) == 2
  assert "no_such.gin" in capsys.readouterr().err
  assert plan.main(["--gin_file=runs/flan_t5_xl_flan2022.gin", "--mesh", "data=8"]) == 2
  assert "data=N,model=M" in capsys.readouterr().err


def test_gin_files_resolve_even_with_a_runs_package_on_sys_path(tmp_path, monkeypatch):
  # A `runs/` directory (a MODEL_DIR) importable as a namespace package must not break `include 'runs/...'`.
  (tmp_path / "runs").mkdir()
  monkeypatch.syspath_prepend(str(tmp_path))
  plan.load_gin(["runs/flan_t5_small_flan2022.gin"], ["TRAIN_STEPS=7"])
  assert plan.gin_macro("TRAIN_STEPS") == 7 and plan.gin_macro("BATCH_SIZE") == 64
  cyc = tmp_path / "cycle.gin"
  cyc.write_text(f"include '{cyc}'\n")
  with pytest.raises(ValueError, match="cycle"):
    plan.load_gin([str(cyc)], [])


def test_plan_without_topology_plans_for_the_local_devices(capsys):
  import jax  # pylint: disable=import-outside-toplevel
  out, _ = _plan_cli(capsys, "--gin_file=models/flan_t5_tiny.gin", "--gin_file=runs/finetune.gin",
                     "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 32}", "--gin.BATCH_SIZE=8")
  n = jax.device_count()
  assert out.startswith(f"planning for this machine's {n} cpu device(s); --topology v4-32")
  assert f"mesh data={n}, model=1 ({n} devices)" in out
