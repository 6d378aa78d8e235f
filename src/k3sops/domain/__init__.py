"""Pure domain code: models, checks, analyzers, planners. No I/O, no clock, no env."""
