from flan_jax.data.seqio_adapter import vocab


def test_t5_vocabulary_has_sentinels_and_known_ids(flan_data_dir):
  v = vocab.get_vocabulary()
  assert v.vocab_size == 32100
  assert v.encode("Hello world") == [8774, 296]
  assert (v.pad_id, v.eos_id) == (0, 1)
  assert v.encode("translate English to German: The house is wonderful.") == [
      13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5]
  assert v.decode([8774, 296, 1]) == "Hello world"


def test_output_features_add_eos_and_inputs_optional(flan_data_dir):
  features = vocab.output_features()
  assert features["inputs"].add_eos and features["targets"].add_eos
  assert not features["inputs"].required and features["targets"].required
