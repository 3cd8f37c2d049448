"""metawsm: a control plane through which coding agents, operators and humans coordinate on tickets."""

__version__ = "0.1.0"
