"""metawsm: the control plane where coding agents, operators and humans coordinate on tickets."""

__version__ = "0.1.0"
