"""Speed and memory figures for the appliance (`python -m benchmarks <name>`). Each module
prints one JSON line per figure; benchmarks measure, they never assert or change state."""
