"""The params: the schema of params.yaml (`schema`), reading and merging params files (`loader`),
retired keys, and the one-shot twins of annealed recipes."""
