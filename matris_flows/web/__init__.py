"""``matris-flows serve``: a read-only web app over a campaign's store (progress, hull explorer, candidates).

A Dash app (plotly for the hull and the 3D structures), served from this machine with every
asset shipped in the wheels: nothing is fetched from the internet. It reads the store through
:mod:`matris_flows.campaign.status` and :mod:`matris_flows.campaign.reading` with the collections
opened read-only, so it can watch a running campaign (the embedded store's WAL lets readers in
beside the writing driver) as well as a finished one. Dash is an optional dependency: install
``matris-flows[web]``.

- :mod:`~matris_flows.web.reader`: what the pages ask of the store.
- :mod:`~matris_flows.web.filters`: the candidate filters (the ``query`` command's) from form values and URLs.
- :mod:`~matris_flows.web.views`: one module per page (progress, hull, candidates, candidate).
- :mod:`~matris_flows.web.downloads`: CSV/JSON of a selection, CIF/POSCAR of a candidate.
- :mod:`~matris_flows.web.app`: the Dash app; :mod:`~matris_flows.web.server`: ``serve``.
"""
