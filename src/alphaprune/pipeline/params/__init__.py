"""The params: the schema of params.yaml (`schema`: data, model, eval, latency, runtime,
replicates; `recipe`: the teacher's training and a variant's pruning recipe; `base`: what they are
built from), reading and merging params files (`loader`), retired keys, and the one-shot twins of
annealed recipes (`twins`)."""
