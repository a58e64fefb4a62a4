"""The stages' own code: the two training stages (`pretrain`, `prune`) and what they share
(`training`: curves, generator, clean accuracy), the params-to-engine wiring (`engine`),
evaluation, the multi-process launcher and the progress line. Definitions only in modules:
importing one stage does not import the others."""
