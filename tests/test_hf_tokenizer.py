"""An HF export is a complete model dir: AutoTokenizer gives the T5 vocabulary's ids and `generate` the tokens
`flan-jax infer` gives; an HF dir with another vocabulary is refused on import."""
from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
import torch
import transformers

from flan_jax import inference, models
from flan_jax.checkpoints import convert, hf
from flan_jax.data.rendering import tokenizer
from flan_jax.models.model import DecoderOnlyModel, EncoderDecoderModel

PROMPTS = ["Translate to German: the house is small.", "Q: What is 2 + 3? A:", "<extra_id_0> is a sentinel"]
T5_SHAPES = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 4), "decoder_target_tokens": (1, 4),
             "decoder_loss_weights": (1, 4)}


def _t5():
  config = models.T5Config(vocab_size=32128, emb_dim=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                           head_dim=16, mlp_dim=64, mlp_activations=("gelu", "linear"), logits_via_embedding=False)
  model = EncoderDecoderModel(config)
  return model, model.init_variables(jax.random.PRNGKey(3), T5_SHAPES)


@pytest.fixture(scope="module")
def exported(flan_data_dir, tmp_path_factory):
  model, params = _t5()
  out = tmp_path_factory.mktemp("hf_export") / "model"
  convert.write_hf(str(out), model, params)
  return model, params, out


def test_export_carries_the_t5_tokenizer(exported):
  _, _, out = exported
  assert {"spiece.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
          "config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
  tok = transformers.AutoTokenizer.from_pretrained(out)
  assert len(tok) == 32100 and tok.eos_token_id == 1 and tok.pad_token_id == 0
  sp = tokenizer.processor()
  for text in PROMPTS:
    assert tok(text).input_ids == sp.encode(text) + [1], text
  assert tok.convert_tokens_to_ids("<extra_id_0>") == 32099
  assert json.loads((out / "generation_config.json").read_text())["decoder_start_token_id"] == 0


def test_hf_generate_gives_the_tokens_flan_jax_infer_gives(exported):
  model, params, out = exported
  tok = transformers.AutoTokenizer.from_pretrained(out)
  hf_model = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
  ours = inference.Predictor(model, params, batch_size=4).predict_ids(
      PROMPTS, inference.DecodeConfig(max_decode_length=12))
  assert any(ids for (ids,) in ours)
  for prompt, (ids,) in zip(PROMPTS, ours):
    with torch.no_grad():
      generated = hf_model.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=12, do_sample=False)
    theirs = generated[0].tolist()[1:]  # after the decoder start token
    if 1 in theirs:
      theirs = theirs[:theirs.index(1)]
    assert theirs == ids, prompt


def test_decoder_only_export_loads_its_tokenizer(flan_data_dir, tmp_path):
  config = models.DecoderOnlyConfig(vocab_size=32128, emb_dim=32, num_heads=2, num_layers=1, head_dim=16, mlp_dim=64)
  model = DecoderOnlyModel(config)
  params = model.init_variables(jax.random.PRNGKey(0), {"decoder_input_tokens": (1, 8),
                                                        "decoder_target_tokens": (1, 8)})
  convert.write_hf(str(tmp_path / "m"), model, params)
  tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "m")
  assert tok(PROMPTS[0]).input_ids[:-1] == tokenizer.processor().encode(PROMPTS[0])
  transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m")


def test_import_refuses_another_vocabulary(exported, tmp_path):
  _, _, out = exported
  config, _ = hf.load(out)  # its own spiece.model is the T5 vocabulary: accepted
  assert config.vocab_size == 32128
  other = tmp_path / "other"
  shutil.copytree(out, other)
  tok = transformers.AutoTokenizer.from_pretrained(out)
  tok.save_pretrained(other)  # writes tokenizer.json
  (other / "spiece.model").unlink()
  hf.load(other)  # tokenizer.json with the same pieces: accepted
  spec = json.loads((other / "tokenizer.json").read_text())
  spec["model"]["vocab"][5] = ["\u2581swapped", 0.0]
  (other / "tokenizer.json").write_text(json.dumps(spec))
  with pytest.raises(ValueError, match=r"tokenizer.json: id 5 is '▁swapped' here but .* another vocabulary"):
    hf.load(other)


def test_transformers_keeps_the_untied_head(exported, caplog):
  """The only notice on load is transformers' own for an untied T5 (its T5 config always says 'tied'), and the
  loaded head is the exported one, not the embedding."""
  import logging  # pylint: disable=import-outside-toplevel
  _, params, out = exported
  transformers.logging.enable_propagation()
  with caplog.at_level(logging.WARNING):
    hf_model = transformers.AutoModelForSeq2SeqLM.from_pretrained(out)
  notices = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert all("will NOT tie them" in n for n in notices), notices
  head = hf_model.lm_head.weight.detach().numpy()
  np.testing.assert_array_equal(head, np.asarray(params["decoder"]["logits_dense"]["kernel"]).T)
  assert hf_model.lm_head.weight.data_ptr() != hf_model.shared.weight.data_ptr()
