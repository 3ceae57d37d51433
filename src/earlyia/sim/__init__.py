"""Built-in simulated light curves (no download needed): :func:`earlyia.sim.ztf.simulate`."""

from earlyia.sim.ztf import CLASSES, load_params, simulate

__all__ = ["CLASSES", "load_params", "simulate"]
