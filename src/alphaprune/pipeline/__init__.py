"""The pipeline layer: the params schema, datasets, the stages, evaluation, figures, the report,
and the `alphaprune` command line, built on the engine in `alphaprune` (which never imports
this package)."""
