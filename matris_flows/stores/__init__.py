"""Where a campaign's results live: the store config, the store factory and the embedded SQLite store.

Layout (import each name from the module that defines it; this package re-exports nothing):

- :mod:`~matris_flows.stores.config`: ``StoreConfig`` (which backend, which collections; the YAML
  files of the top-level ``stores/`` folder), ``StoreConfigError``, ``load_store_config``,
  ``describe_store`` and the names of the JobStore's additional stores (``DATA_STORE_NAME``,
  ``JOURNAL_STORE_NAME``);
- :mod:`~matris_flows.stores.backends`: the one store factory (``make_collection_store``,
  ``make_job_store``, ``connect_job_store``, ``make_candidates_store``, ``index_candidates``),
  one builder per backend (the MongoDB client timeout comes from the config);
- :mod:`~matris_flows.stores.campaign_store`: ``CampaignStore``, the collection job inputs hold
  (serialised as names, built where it is used);
- :mod:`~matris_flows.stores.health`: ``check_store`` (reach the servers before a campaign
  starts) and ``unusable_reason``;
- :mod:`~matris_flows.stores.sqlite`: the embedded, indexed SQLite store (its own layout there).
"""
