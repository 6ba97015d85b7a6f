"""Hull stage: relaxed candidates -> MP-compatible energies above the convex hull.

``mp_compat`` puts model energies on MP's scale (per the potential's energy
convention), ``references`` provides reference entries (local files, MP API with a
maggma cache, campaign-internal), ``hull`` evaluates energies above the hull with
one phase diagram per chemical system, ``assess`` joins them into
``schemas.CandidateDocument``-s and ``jobs.HullMaker`` runs that as a jobflow job.
"""
