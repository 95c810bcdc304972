"""bench: seeded, repeated, significance-tested trials of NCF variants on top of ncf_core."""
