"""Numerics shared by the agents: network builders (nets), the fused Adam and gradient clipping
(optim), running statistics (stats) and advantage estimation (returns)."""
