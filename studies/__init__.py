"""The studies: each one reproduces a claim of the literature with zoo models and stock training.

A study is its experiment config (``configs/experiment/<study>.yaml``), plus, where it needs them,
its own small pieces in one module here: callbacks that log what the claim is about (the gates of
a highway network, the checkerboard of a decoder) and the report that turns its runs into a table
and a figure. The training core knows no study; a study plugs in through its config.
"""
