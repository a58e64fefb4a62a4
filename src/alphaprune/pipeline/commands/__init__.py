"""The `alphaprune` commands, one module each, with `add_arguments(parser)` and `run(args)`;
what they share is `_shared`.

The dispatcher (`alphaprune.pipeline.cli`) imports only the module a command line names, so a
pipeline stage runs, depends on and reruns for only the code its command imports (`codedeps`):
editing the plots reruns the plots stage, not the teacher.
"""
