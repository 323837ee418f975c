"""Raw packet labs: one folder each (README, program, tests run against the guest)."""
