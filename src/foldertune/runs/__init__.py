"""The run folder and what it is made of: checkpoints, CSV tables, atomic writes, the cache folder."""
