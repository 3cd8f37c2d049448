"""Incident drills: ``metawsm drill KIND``.

Each drill starts a scratch stack of its own (:mod:`.stack`: a private Redis, a scratch
database, the real ``metawsm worker`` and ``metawsm beat`` processes), drives a steady mixed
load through the product's submit path (:mod:`.load`), injects one fault (:mod:`.faults`),
waits until everything has settled (:mod:`.settle`), counts what was lost or applied twice from
the database (:mod:`.tally`) and reports it (:mod:`.report`); :mod:`.runner` puts them together.
"""
