"""Campaigns: a YAML spec becomes one jobflow Flow (generation → relax → hull → validation),
run on Dask (or ``run_locally``) with results in maggma stores."""
