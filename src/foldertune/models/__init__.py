"""Backbones: the registry, building a model with a new head, transfer modes and pretrained weights."""
