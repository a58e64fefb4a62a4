"""What a stage ran: each stage's code (`codedeps`), the params records and triggers the tools
compare (`records`), and dvc.yaml's generated lists (`dvcyaml`)."""
