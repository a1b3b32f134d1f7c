"""`fleetrun`: the operator's command line, a thin layer over the SDK."""
