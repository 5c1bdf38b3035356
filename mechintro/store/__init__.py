"""The run store, one job per module: :mod:`~mechintro.store.schema` (what a run holds),
:mod:`~mechintro.store.manifest` (digests and batch records, the checks on open),
:mod:`~mechintro.store.run_store` (create, commit, open), :mod:`~mechintro.store.verify`
(``mechintro verify``), :mod:`~mechintro.store.merge` (``mechintro merge``) and
:mod:`~mechintro.store.shards`. ``mechintro.runs`` re-exports their public names.
"""
