"""Deep equilibrium models: solvers, layers, cells, Hamburger NMF and the sweepable jobs."""
