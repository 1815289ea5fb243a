"""The stages of a dataset run, one module each, in data-flow order:

extract -> generate -> annotate -> export -> review -> evaluate

Each stage reads the run folder's earlier outputs and writes its own,
atomically, as ``pipeline.contracts`` describes; a stage never reads a later
stage's files.
"""
