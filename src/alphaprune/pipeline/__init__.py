"""The pipeline layer, built on the engine in `alphaprune` (which never imports this package): the
`alphaprune` command line (`cli`, `commands/`) over the stages (`stages/`), reading results
(`report/`) and deployment (`deploy/`), over the prepared data (`data/`), over the params
(`params/`) and what a stage ran (`provenance/`). Each room imports only the rooms below it
(pyproject.toml's layers contract, checked by `make lint`)."""
