"""Parity suite: paddle_rep against the torch_ref reference."""
