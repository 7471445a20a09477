"""Tools a model can use: a sandbox for its programs, a safe calculator, a tool registry,
prompting strategies and the ReAct loop."""
