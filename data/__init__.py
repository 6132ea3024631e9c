"""Data modules: filled in by the training issue."""
